"""The fast blob path (stdlib `http.client`) against a local HTTP server: redirects, errors,
truncated bodies, and that the token never leaves the registry's host."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from ppatch.errors import NetworkError
from ppatch.registry.client import RegistryClient
from ppatch.registry.direct_http import ForeignOriginError, direct_connection_possible
from ppatch.registry.errors import DownloadTooLargeError, RegistryNotFoundError
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
        elif self.path == "/endless":  # no Content-Length: the body runs until the close
            self.send_response(200)
            self.end_headers()
            for _ in range(4):
                self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", "http://attacker.invalid/blob")
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


def _transports() -> list[httpx.BaseTransport | None]:
    """None takes the stdlib fast path; an explicit transport takes the httpx path."""
    return [None, httpx.HTTPTransport()]


@pytest.mark.parametrize("transport", _transports(), ids=["stdlib", "httpx"])
def test_follows_redirects_to_a_mirror_without_sending_the_token_there(
    server: str, monkeypatch: pytest.MonkeyPatch, transport: httpx.BaseTransport | None
) -> None:
    port = server.rsplit(":", 1)[1]
    monkeypatch.setenv("PPATCH_MIRRORS", f"http://localhost:{port}")
    sink = io.BytesIO()
    with RegistryClient(server, token="secret", retries=0, transport=transport) as client:
        client.download("/moved", sink)
    assert sink.getvalue() == PAYLOAD
    # 127.0.0.1 redirected to localhost: another origin, so no token there.
    assert Handler.seen_authorization == ["Bearer secret", None]


@pytest.mark.parametrize("path", ["/moved", "/elsewhere"])
@pytest.mark.parametrize("transport", _transports(), ids=["stdlib", "httpx"])
def test_a_redirect_off_the_registry_and_its_mirrors_is_refused(
    server: str, path: str, transport: httpx.BaseTransport | None
) -> None:
    client = RegistryClient(server, token="secret", retries=0, transport=transport)
    with client, pytest.raises(ForeignOriginError, match="only from the registry"):
        client.download(path, io.BytesIO())
    assert Handler.seen_authorization == ["Bearer secret"]  # nothing was fetched elsewhere


def test_an_absolute_url_on_another_host_is_refused_before_any_request(server: str) -> None:
    with RegistryClient(server, retries=0) as client, pytest.raises(ForeignOriginError):
        client.download("http://attacker.invalid/blob", io.BytesIO())
    assert Handler.seen_authorization == []


@pytest.mark.parametrize("path", ["/blob", "/endless"])  # declared length, then none
@pytest.mark.parametrize("transport", _transports(), ids=["stdlib", "httpx"])
def test_a_download_stops_at_the_expected_length(
    server: str, path: str, transport: httpx.BaseTransport | None
) -> None:
    sink = io.BytesIO()
    client = RegistryClient(server, retries=0, transport=transport)
    with client, pytest.raises(DownloadTooLargeError, match="more than the 1331 bytes"):
        client.download(path, sink, max_bytes=1331)
    assert len(sink.getvalue()) <= 1331


def test_a_download_of_exactly_the_expected_length_passes(server: str) -> None:
    sink = io.BytesIO()
    with RegistryClient(server, retries=0) as client:
        client.download("/blob", sink, max_bytes=len(PAYLOAD))
    assert sink.getvalue() == PAYLOAD


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
