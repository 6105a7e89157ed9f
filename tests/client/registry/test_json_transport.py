"""The standard-library JSON transport of the update check, against a local scripted server:
success, error mapping (the same exceptions and messages as the httpx client), retries on 5xx
and refused connections, timeouts, redirects, https (trusting what httpx trusts), and the update
check's offline and proxy rules."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ppatch.errors import ExitCode, NetworkError, UsageError
from ppatch.registry.client import RegistryClient
from ppatch.registry.direct_http import same_host_headers
from ppatch.registry.errors import (
    ERROR_CLASSES,
    AnswerTooLargeError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
    UnauthorizedError,
    UnexpectedResponseError,
)
from ppatch.registry.json_transport import JsonTransport
from ppatch.registry.update_check import UPDATES_PATH, check_updates
from tests.client.http_servers import serving
from tests.ports import refused_port

INSTALLED = [{"name": "acme/toxicity", "version": "1.2.1", "fingerprint": "sha256:" + "a" * 64}]
RESULTS = {"results": [{"name": "acme/toxicity", "latest": "1.3.0", "found": True}, "junk"]}
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy")  # fmt: skip


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    short_by: int = 0  # promise this many bytes more than are sent, then close


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next `Reply` of the script (the last one repeats)."""

    script: ClassVar[list[Reply]] = []
    seen: ClassVar[list[Seen]] = []

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append(Seen(self.command, self.path, dict(self.headers), body))
        script = type(self).script
        reply = script.pop(0) if len(script) > 1 else script[0]
        time.sleep(reply.delay)
        content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value.replace("{port}", str(self.server.server_address[1])))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content) + reply.short_by))
        self.end_headers()
        self.wfile.write(content)
        if reply.short_by:
            self.close_connection = True

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.script, Scripted.seen = [Reply(200, RESULTS)], []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Scripted)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def script(*replies: Reply) -> None:
    Scripted.script = list(replies)


def transport(url: str, *, retries: int = 2, timeout: float = 5.0, token: str | None = None
              ) -> tuple[JsonTransport, list[float]]:  # fmt: skip
    pauses: list[float] = []
    return JsonTransport(
        url, token=token, retries=retries, timeout=timeout, sleep=pauses.append
    ), pauses


def updates(client: JsonTransport, *, idempotent: bool = True) -> dict[str, Any]:
    return client.request("POST", UPDATES_PATH, body={"installed": INSTALLED},
                          idempotent=idempotent)  # fmt: skip


def test_posts_json_with_the_client_headers_and_returns_the_object(server: str) -> None:
    client, pauses = transport(server, token="secret")
    assert updates(client) == RESULTS
    [seen] = Scripted.seen
    assert (seen.method, seen.path) == ("POST", UPDATES_PATH)
    assert json.loads(seen.body) == {"installed": INSTALLED}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer secret"
    assert seen.headers["User-Agent"].startswith("ppatch/")
    assert pauses == []


def test_no_token_sends_no_authorization(server: str) -> None:
    updates(transport(server)[0])
    assert "Authorization" not in Scripted.seen[0].headers


@pytest.mark.parametrize(("code", "cls"), sorted(ERROR_CLASSES.items()))
def test_each_error_code_maps_to_the_same_exception_as_the_httpx_client(
    server: str, code: str, cls: type[RegistryError]
) -> None:
    status = 503 if issubclass(cls, RegistryUnavailableError) else 409
    script(Reply(status, {"error": {"code": code, "message": f"bad {code}"}}))
    with pytest.raises(cls) as fast:
        updates(transport(server, retries=0)[0])
    with RegistryClient(server, retries=0) as client, pytest.raises(cls) as slow:
        client.check_updates(INSTALLED)
    assert str(fast.value) == str(slow.value)
    assert (fast.value.code, fast.value.status, fast.value.url) == (
        slow.value.code, slow.value.status, slow.value.url,
    )  # fmt: skip
    assert f"bad {code} ({status} {code})" in str(fast.value)


def test_an_error_without_the_registry_body_is_mapped_by_status(server: str) -> None:
    script(Reply(404, b"<html>nginx</html>"))
    with pytest.raises(RegistryNotFoundError, match=r"Not Found \(404 not_found\)") as caught:
        updates(transport(server)[0])
    assert caught.value.exit_code == ExitCode.NOT_FOUND
    assert caught.value.url == server + UPDATES_PATH
    assert len(Scripted.seen) == 1  # a 4xx is not retried


def test_unauthorized_says_how_to_set_a_token(server: str) -> None:
    script(Reply(401, {"error": {"code": "unauthorized", "message": "bad token"}}))
    with pytest.raises(UnauthorizedError, match="PPATCH_TOKEN"):
        updates(transport(server)[0])


def test_5xx_is_retried_with_backoff_then_succeeds(server: str) -> None:
    script(Reply(503, {"error": {"code": "database_unavailable", "message": "db"}}),
           Reply(502, b"bad gateway"), Reply(200, RESULTS))  # fmt: skip
    client, pauses = transport(server)
    assert updates(client) == RESULTS
    assert len(Scripted.seen) == 3
    assert pauses == [0.25, 0.5]


def test_5xx_after_the_last_retry_is_the_mapped_error(server: str) -> None:
    script(Reply(503, {"error": {"code": "database_unavailable", "message": "db down"}}))
    client, pauses = transport(server, retries=1)
    with pytest.raises(RegistryUnavailableError, match="db down") as caught:
        updates(client)
    assert caught.value.exit_code == ExitCode.NETWORK
    assert len(Scripted.seen) == 2 and pauses == [0.25]


def test_a_non_idempotent_request_is_not_retried_after_a_5xx(server: str) -> None:
    script(Reply(500, b""))
    with pytest.raises(RegistryUnavailableError):
        updates(transport(server)[0], idempotent=False)
    assert len(Scripted.seen) == 1


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_refused_connection_is_retried_then_a_network_error(idempotent: bool) -> None:
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        client, pauses = transport(url)
        with pytest.raises(NetworkError, match=f"cannot reach the registry at '{url}'") as caught:
            updates(client, idempotent=idempotent)
    assert caught.value.exit_code == ExitCode.NETWORK
    # Nothing was sent, so even a non-idempotent request is tried again.
    assert pauses == [0.25, 0.5]


def test_a_slow_answer_times_out_and_is_retried(server: str) -> None:
    script(Reply(200, RESULTS, delay=1.0))
    client, pauses = transport(server, retries=1, timeout=0.2)
    with pytest.raises(NetworkError, match="timed out"):
        updates(client)
    assert len(Scripted.seen) == 2 and pauses == [0.25]


def test_a_truncated_body_is_retried_then_a_network_error(server: str) -> None:
    script(Reply(200, RESULTS, short_by=100))
    client, pauses = transport(server, retries=1)
    with pytest.raises(NetworkError, match="cannot reach the registry"):
        updates(client)
    assert pauses == [0.25]


def test_a_success_that_is_not_a_json_object_names_the_url(server: str) -> None:
    script(Reply(200, b"<html>a login page</html>"))
    with pytest.raises(UnexpectedResponseError, match=r"is '.*' a ppatch registry"):
        updates(transport(server)[0])


def test_307_repeats_the_post_and_302_turns_it_into_a_get(server: str) -> None:
    script(Reply(307, b"", {"Location": "/moved"}), Reply(302, b"", {"Location": "/final"}),
           Reply(200, RESULTS))  # fmt: skip
    assert updates(transport(server)[0]) == RESULTS
    assert [(seen.method, seen.path) for seen in Scripted.seen] == [
        ("POST", UPDATES_PATH), ("POST", "/moved"), ("GET", "/final"),
    ]  # fmt: skip
    assert Scripted.seen[1].body == Scripted.seen[0].body
    assert Scripted.seen[2].body == b""


def test_a_redirect_to_another_host_does_not_carry_the_token(server: str) -> None:
    script(Reply(307, b"", {"Location": "http://localhost:{port}/elsewhere"}), Reply(200, RESULTS))
    updates(transport(server, token="secret")[0])
    assert [seen.headers.get("Authorization") for seen in Scripted.seen] == ["Bearer secret", None]


def test_endless_redirects_are_a_network_error(server: str) -> None:
    script(Reply(307, b"", {"Location": "/again"}))
    with pytest.raises(NetworkError, match="redirected more than 5 times"):
        updates(transport(server)[0])


def test_check_updates_returns_only_the_result_objects(server: str) -> None:
    assert check_updates(server + "/", INSTALLED, retries=0) == [RESULTS["results"][0]]
    assert json.loads(Scripted.seen[0].body) == {"installed": INSTALLED}


def test_check_updates_offline_contacts_nothing(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPATCH_OFFLINE", "1")
    with pytest.raises(NetworkError, match="PPATCH_OFFLINE is set") as caught:
        check_updates(server, INSTALLED)
    assert caught.value.exit_code == ExitCode.NETWORK
    assert Scripted.seen == []


def test_check_updates_through_a_proxy_uses_httpx_which_honours_it(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted server plays the proxy: a proxied request carries the absolute URL.
    monkeypatch.setenv("HTTP_PROXY", server)
    assert check_updates("http://registry.test", INSTALLED, retries=0) == [RESULTS["results"][0]]
    assert Scripted.seen[0].path == "http://registry.test" + UPDATES_PATH


# -- https ------------------------------------------------------------------------------------


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no public bundle trusts, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ppatch test registry")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    Scripted.script, Scripted.seen = [Reply(200, RESULTS)], []
    cert_path, key_path = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    with serving(httpd) as port:
        yield f"https://127.0.0.1:{port}", cert_path


def test_https_verifies_against_ssl_cert_file_as_httpx_does(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert_path = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    assert updates(transport(url, token="secret")[0]) == RESULTS
    with RegistryClient(url, retries=0) as client:
        assert client.check_updates(INSTALLED) == [RESULTS["results"][0]]
    assert Scripted.seen[0].headers["Authorization"] == "Bearer secret"


def test_https_refuses_a_certificate_no_trusted_authority_signed(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _cert_path = https_server
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NetworkError, match="certificate verify failed") as caught:
        updates(transport(url, retries=0)[0])
    assert caught.value.exit_code == ExitCode.NETWORK
    with RegistryClient(url, retries=0) as client, pytest.raises(NetworkError, match="certif"):
        client.check_updates(INSTALLED)
    assert Scripted.seen == []


# -- hostile answers: endless data, tokens in clear ------------------------------------------


def test_an_answer_past_the_cap_is_refused_by_both_transports(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ppatch import constants

    monkeypatch.setattr(constants, "MAX_ANSWER_BYTES", 4096)
    padded = {"results": [], "padding": "x" * 10_000}
    script(Reply(200, padded))
    with pytest.raises(AnswerTooLargeError, match="more than 4096 bytes"):
        updates(transport(server)[0])
    with RegistryClient(server, retries=0) as client, pytest.raises(AnswerTooLargeError):
        client.search("anything")


def test_an_answer_within_the_cap_is_read_whole(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ppatch import constants

    monkeypatch.setattr(constants, "MAX_ANSWER_BYTES", len(json.dumps(RESULTS)))
    assert updates(transport(server)[0]) == RESULTS


@pytest.mark.parametrize("url", ["http://registry.example.org", "http://10.0.0.5:8000"])
def test_a_token_is_never_sent_over_plain_http_off_this_machine(url: str) -> None:
    with pytest.raises(UsageError, match="over plain http"):
        JsonTransport(url, token="secret")
    with pytest.raises(UsageError, match="over plain http"):
        RegistryClient(url, token="secret")


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("https://registry.example.org/blobs/x", True),
        ("http://registry.example.org/blobs/x", False),  # https -> http on the same host
        ("https://registry.example.org:8443/blobs/x", False),
        ("https://cdn.example.org/blobs/x", False),
    ],
)
def test_the_token_stays_on_the_registrys_origin(target: str, kept: bool) -> None:
    headers = {"Authorization": "Bearer secret", "User-Agent": "ppatch"}
    sent = same_host_headers(headers, target, "https://registry.example.org/api/v1/x")
    assert ("Authorization" in sent) is kept
    assert sent["User-Agent"] == "ppatch"


def test_an_https_to_http_redirect_drops_the_token(server: str) -> None:
    # The scripted server speaks http on 127.0.0.1; the redirect goes to "localhost" over http
    # from an origin that differs in host: the token must not follow.
    script(Reply(307, {}, headers={"Location": "http://localhost:{port}/x"}), Reply(200, RESULTS))
    assert updates(transport(server, token="secret")[0]) == RESULTS
    assert Scripted.seen[0].headers.get("Authorization") == "Bearer secret"
    assert "Authorization" not in Scripted.seen[1].headers
