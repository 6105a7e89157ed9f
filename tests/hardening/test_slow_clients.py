"""Slow and idle clients against a real `ppatch-registry serve`, over raw sockets: headers that
trickle in, a body that trickles in, an idle keep-alive connection. Each is cut off at its
configured limit (set short here), and the server keeps answering everyone else."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hardening import live_registry as live

pytestmark = pytest.mark.timeout(120)

LIMIT = 1.0  # seconds, for the header, body and keep-alive timeouts alike
SLACK = 2.0  # the deadline's timer and a loaded machine's scheduling


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.LiveRegistry]:
    folder = tmp_path_factory.mktemp("slow-clients")
    registry = live.LiveRegistry(
        home=folder / "home",
        database_url=live.sqlite_database(folder),
        settings={
            "header_timeout": str(LIMIT),
            "body_timeout": str(LIMIT),
            "keep_alive_timeout": str(LIMIT),
        },
    )
    registry.start()
    try:
        yield registry
    finally:
        registry.kill()


def _trickle(sock: socket.socket, data: bytes, *, every: float, give_up: float) -> float | None:
    """Send `data` a byte at a time; the seconds until the server answered or closed, or None
    when it still had not after `give_up` seconds."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        if time.monotonic() - started > give_up:
            return None
        try:
            sock.sendall(bytes([byte]))
            sock.recv(65536, socket.MSG_PEEK)  # waits `every`: returns once answered or closed
            return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            return time.monotonic() - started
    return None


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def test_headers_that_trickle_in_are_cut_off(server: live.LiveRegistry) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        cut = _trickle(sock, head, every=0.2, give_up=LIMIT + SLACK + 5)
        assert cut is not None, "a trickling request head was never cut off"
        assert LIMIT * 0.8 <= cut <= LIMIT + SLACK
        assert b"200 OK" not in _read_all(sock)
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200


def test_a_body_that_trickles_in_is_answered_408_and_closed(server: live.LiveRegistry) -> None:
    head = (
        b"POST /api/v1/updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 400\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        cut = _trickle(sock, b'{"installed": [' + b" " * 385, every=0.2, give_up=LIMIT + SLACK + 5)
        assert cut is not None, "a trickling body was never cut off"
        assert LIMIT * 0.8 <= cut <= LIMIT + SLACK
        answer = _read_all(sock)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in rest.lower()
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "invalid_request"
    assert f"within {LIMIT:g} seconds" in error["message"]


def test_an_idle_keep_alive_connection_is_closed(server: live.LiveRegistry) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        answer = b""
        while not answer.endswith(b'"database":"ok"}'):  # the whole answer, however split
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.settimeout(LIMIT + SLACK + 5)
        assert sock.recv(65536) == b""  # closed by the server
        assert time.monotonic() - started <= LIMIT + SLACK


def test_a_prompt_client_on_a_kept_alive_connection_is_not_cut_off(
    server: live.LiveRegistry,
) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(4):  # longer, all together, than the header deadline
            assert client.get("/healthz").status_code == 200
            time.sleep(LIMIT / 2)
