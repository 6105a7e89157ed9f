"""The fast blob path (stdlib `http.client`) against a local HTTP server: redirects, errors,
truncated bodies, and that the token never leaves the registry's host."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from ppatch.errors import NetworkError
from ppatch.registry.client import RegistryClient
from ppatch.registry.direct_http import direct_connection_possible
from ppatch.registry.errors import RegistryNotFoundError
from tests.client.http_servers import serving

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB: several 1 MiB reads


class Handler(BaseHTTPRequestHandler):
    seen_authorization: ClassVar[list[str | None]] = []

    def log_message(self, *_args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        type(self).seen_authorization.append(self.headers.get("Authorization"))
        if self.path == "/blob":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.close_connection = True
        else:
            body = b'{"error": {"code": "not_found", "message": "no such blob"}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen_authorization = []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"http://127.0.0.1:{port}"


def test_streams_and_hashes(server: str) -> None:
    sink = io.BytesIO()
    with RegistryClient(server, token="secret", retries=0) as client:
        assert client.download("/blob", sink) == hashlib.sha256(PAYLOAD).hexdigest()
    assert sink.getvalue() == PAYLOAD
    assert Handler.seen_authorization == ["Bearer secret"]


def test_follows_redirects_without_sending_the_token_elsewhere(server: str) -> None:
    sink = io.BytesIO()
    with RegistryClient(server, token="secret", retries=0) as client:
        client.download("/moved", sink)
    assert sink.getvalue() == PAYLOAD
    # 127.0.0.1 redirected to localhost: another host, so no token there.
    assert Handler.seen_authorization == ["Bearer secret", None]


def test_error_answers_map_to_typed_errors(server: str) -> None:
    with RegistryClient(server, retries=0) as client, pytest.raises(RegistryNotFoundError):
        client.download("/missing", io.BytesIO())


def test_a_truncated_body_is_retried_then_a_network_error(server: str) -> None:
    pauses: list[float] = []
    client = RegistryClient(server, retries=1, sleep=pauses.append)
    with client, pytest.raises(NetworkError, match="body missing"):
        client.download("/short", io.BytesIO())
    assert len(pauses) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, True), ({"HTTP_PROXY": "http://proxy:3128"}, False),
     ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "registry.test"}, True)],
)  # fmt: skip
def test_proxies_keep_httpx(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert direct_connection_possible("http://registry.test/blobs/x") is expected
