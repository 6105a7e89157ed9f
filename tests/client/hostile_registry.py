"""A hostile registry: a proxy in front of a real one that forwards, records, rewrites and replays.

The attacks of issue 15 are played by this proxy: it forwards every request to the real
registry (so signatures, keys and blobs are genuine) unless a test has told it to answer a
path otherwise, with another answer of the real registry recorded earlier (a replay), a
rewritten body (namespace substitution, foreign blob URLs) or an endless body.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from tests.client.http_servers import serving

__all__ = ["Answer", "HostileRegistry", "hostile_registry"]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, document: Any) -> Answer:
        body = json.dumps(document).encode()
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
        return Answer(self.status, headers, body)


# An answer that never ends: `endless` bytes of padding, sent without a Content-Length.
Endless = int


@dataclass
class HostileRegistry:
    """The proxy's URL and what it has been told to do."""

    url: str
    upstream: str
    overrides: dict[str, Answer | Endless] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def fetch(self, path: str, method: str = "GET", body: bytes | None = None) -> Answer:
        """The real registry's answer to `path` now (to record it for a later replay)."""
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            kept = {
                key: value
                for key, value in response.getheaders()
                if key.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            return Answer(response.status, kept, response.read())
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    hostile: ClassVar[HostileRegistry]
    protocol_version = "HTTP/1.0"

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self) -> None:
        hostile = type(self).hostile
        hostile.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = self.path.split("?", 1)[0]
        override = hostile.overrides.get(path)
        if isinstance(override, int):
            self.send_response(200)
            self.end_headers()
            chunk = b"\0" * 65536
            for _ in range(override // len(chunk)):
                self.wfile.write(chunk)
            return
        answer = override or hostile.fetch(self.path, self.command, body)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def do_GET(self) -> None:
        # The client may stop reading (an endless body): what these tests want.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer()

    def do_POST(self) -> None:
        self._answer()


@contextmanager
def hostile_registry(upstream: str) -> Iterator[HostileRegistry]:
    """A hostile proxy for `upstream`, on a free loopback port, for the length of a test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    hostile = HostileRegistry(url=f"http://127.0.0.1:{port}", upstream=upstream)
    handler = type("Handler", (_Handler,), {"hostile": hostile})
    server.RequestHandlerClass = handler
    with serving(server):
        yield hostile


def rewrite(answer: Answer, change: Callable[[Any], Any]) -> Answer:
    """`answer` with its JSON body passed through `change`."""
    return answer.with_json(change(answer.json()))
