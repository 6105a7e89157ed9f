"""Ports for tests: bound by the server itself (port 0, read back), or refused for sure.

Choosing a port by binding port 0, closing it and handing the number to a server is a race:
another process (eight developers' suites share this machine) may take the port in between. A
server told to bind port 0 gets a port nobody else holds; these helpers read back which.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["port_from_log", "refused_port", "uvicorn_port"]

_RUNNING = re.compile(rb"Uvicorn running on https?://[^\s:]+:(\d+)")


def port_from_log(
    log: Path, alive: Callable[[], bool], *, after: int = 0, timeout: float = 60
) -> int:
    """The port a `ppatch-registry serve --port 0 --log-level info` (uvicorn) reports in `log`,
    looking only past byte `after` (a log appended to by several runs). Raises when the server
    exits or says nothing within `timeout` seconds (a bound for a hung start, not a speed
    check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_bytes()[after:] if log.exists() else b""
        found = _RUNNING.search(text)
        if found:
            return int(found.group(1))
        if not alive():
            raise RuntimeError(f"the server exited: {text[-2000:].decode(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"the server did not report its port within {timeout} s")


def uvicorn_port(server: object) -> int:
    """The port an in-process, started `uvicorn.Server` bound (it was given port 0)."""
    sockets = [sock for listener in server.servers for sock in listener.sockets]  # type: ignore[attr-defined]
    return int(sockets[0].getsockname()[1])


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the context lasts.

    The socket is bound but never listens: Linux answers a connection attempt to it with a
    reset (ECONNREFUSED), and no other process can bind the port while this one holds it, so,
    unlike a port freed a moment ago, nothing can start listening there during the test.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
