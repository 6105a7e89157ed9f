"""What an anonymous client can make the registry do is bounded, and its pages carry security
headers: body size (413 before parsing), list lengths (the schema), paging, control characters
in stored text, the public URL from configuration, /docs from local files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry_server import admin
from registry_server.config import BATCH_CEILING, Settings
from registry_server.errors import RegistryError
from registry_server.main import create_app
from registry_server.page_headers import PAGE_CSP
from registry_server.schemas import SearchOut

STATIC = Path(__file__).resolve().parents[2] / "registry_server" / "static"
ENTRY = {"name": "acme/toxicity", "version": "1.0.0", "fingerprint": "sha256:" + "a" * 64}


@pytest.fixture
def published(acme, make_patch):
    assert acme.upload(make_patch(version="1.0.0")).status_code == 201
    return acme


def _with(settings: Settings, **changes: object) -> Settings:
    """`settings` with `changes`, validated as the environment's values would be."""
    return Settings(**{**settings.model_dump(), **changes})


def _error(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


# -- pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/?q=tox", "/p/acme/toxicity", "/p/acme/nothing", "/docs"])
def test_every_html_page_has_the_security_headers(published, path: str) -> None:
    response = published.client.get(path)
    assert response.status_code in (200, 404)
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp
    if path != "/docs":
        assert csp == PAGE_CSP and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    # Nothing inline for the CSP to refuse, and nothing from another origin.
    assert "<style" not in response.text and " style=" not in response.text
    assert " onclick=" not in response.text
    assert re.search(r"<script>(?!</script>)", response.text) is None
    assert re.search(r"""(src|href)=["']?(https?:)?//""", response.text) is None


def test_json_answers_are_nosniff(published) -> None:
    response = published.client.get("/api/v1/search")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers


def test_the_host_header_is_never_shown(published) -> None:
    for path in ("/", "/p/acme/toxicity"):
        page = published.client.get(path, headers={"Host": "evil.example"}).text
        assert "evil.example" not in page
    assert 'id="registry-url"' not in published.client.get("/p/acme/toxicity").text


@pytest.mark.parametrize("bad", ["patches.example", "javascript:alert(1)", "https://a b"])
def test_a_public_url_must_be_an_http_url(bad: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        Settings(public_url=bad)


def test_the_public_url_comes_from_the_settings(published) -> None:
    settings = _with(published.settings, public_url="https://patches.example/")
    # As a context manager: the lifespan closes the database connections the app opened.
    with TestClient(create_app(settings, engine=published.engine)) as client:
        page = client.get("/p/acme/toxicity", headers={"Host": "evil.example"}).text
    assert '<code id="registry-url">https://patches.example</code>' in page
    assert "evil.example" not in page


def test_docs_assets_are_served_from_the_package(published) -> None:
    page = published.client.get("/docs").text
    assets = re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", page)
    assert set(assets) == {
        "/static/swagger-ui/swagger-ui.css",
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-start.js",
    }
    for asset in assets:
        response = published.client.get(asset)
        assert response.status_code == 200
        assert response.content == (STATIC / asset.removeprefix("/static/")).read_bytes()
    assert (STATIC / "swagger-ui" / "LICENSE").is_file()


def test_the_package_list_is_paged(acme, make_patch) -> None:
    for index in range(3):
        acme.namespace(f"ns{index}")
    pages = acme.client.get("/?q=zzz").text
    assert 'id="pages"' not in pages
    # Search paging through the API: limit and offset.
    for index in range(3):
        data = make_patch(name=f"acme/p{index}", seed=index)
        assert acme.upload(data, path=f"acme/p{index}").status_code == 201
    names = [
        [r["name"] for r in acme.client.get(f"/api/v1/search?limit=2&offset={o}").json()["results"]]
        for o in (0, 2)
    ]
    assert names == [["p0", "p1"], ["p2"]]
    answer = acme.client.get("/api/v1/search?q=p").json()
    assert SearchOut.model_validate(answer).model_dump() == answer  # the documented shape
    assert acme.client.get("/api/v1/search?limit=201").status_code == 422
    assert acme.client.get("/?page=0").status_code == 422


def test_a_package_page_lists_a_bounded_number_of_versions(acme, make_patch) -> None:
    from registry_server import pages

    for minor in range(5):
        assert acme.upload(make_patch(version=f"1.{minor}.0", seed=minor)).status_code == 201
    original = pages.VERSIONS_SHOWN
    pages.VERSIONS_SHOWN = 2
    try:
        page = acme.client.get("/p/acme/toxicity").text
    finally:
        pages.VERSIONS_SHOWN = original
    assert re.findall(r"<td>(1\.\d\.0)</td>", page) == ["1.4.0", "1.3.0"]
    assert "3 older versions are not listed" in page


# -- request bodies -----------------------------------------------------------------------


def test_a_declared_oversize_body_is_refused_before_it_is_read(published) -> None:
    limit = published.settings.max_request_bytes
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(4):
            sent += 1
            yield b" " * (limit // 2)

    response = published.client.post(
        "/api/v1/updates",
        content=body(),
        headers={"Content-Type": "application/json", "Content-Length": str(2 * limit)},
    )
    assert _error(response)[:2] == (413, "payload_too_large")


def test_an_undeclared_oversize_body_is_refused_while_it_streams(published) -> None:
    limit = published.settings.max_request_bytes

    def body() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"installed": ['
        for _ in range(3 * limit // 80_000):
            yield json.dumps(ENTRY).encode() * 1000 + b","

    response = published.client.post(
        "/api/v1/updates", content=body(), headers={"Content-Type": "application/json"}
    )
    status, code, message = _error(response)
    assert (status, code) == (413, "payload_too_large")
    assert f"over the limit of {limit} bytes" in message


def test_a_list_longer_than_the_schema_allows_is_refused(published) -> None:
    many = {"installed": [{"name": "a", "version": "1", "fingerprint": "f"}] * (BATCH_CEILING + 1)}
    status, code, message = _error(published.client.post("/api/v1/updates", json=many))
    assert (status, code) == (422, "invalid_request")
    assert f"at most {BATCH_CEILING} items" in message
    over = {"installed": [ENTRY] * (published.settings.max_batch + 1)}
    status, code, message = _error(published.client.post("/api/v1/updates", json=over))
    assert (status, code) == (400, "invalid_request")
    assert "the limit is 500" in message


def test_an_upload_may_be_larger_than_other_bodies(acme, make_patch) -> None:
    settings = _with(acme.settings, max_request_bytes=512)
    client = TestClient(create_app(settings, engine=acme.engine))
    data = make_patch(tokens=64, hidden=16)
    assert len(data) > 512
    response = client.post(
        "/api/v1/packages/acme/toxicity/releases",
        files={"file": ("patch.ppatch", data, "application/octet-stream")},
        headers=acme.auth(),
    )
    assert response.status_code == 201, response.text
    big = {"reason": "x" * 1000}
    yank = client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json=big,
        headers=acme.auth(scope="yank"),
    )
    assert _error(yank)[:2] == (413, "payload_too_large")


# -- free text ----------------------------------------------------------------------------

CONTROLS = ["\x1b[2K\x1b[1A up to date", "bell\x07", "line\nbreak", "\u202eevil", "c1\x9b"]


@pytest.mark.parametrize("reason", CONTROLS)
def test_a_yank_reason_with_control_characters_is_refused(published, reason: str) -> None:
    response = published.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": reason},
        headers=published.auth(scope="yank"),
    )
    status, code, message = _error(response)
    assert (status, code) == (422, "invalid_request")
    assert "control character" in message
    index = published.client.get("/api/v1/packages/acme/toxicity").json()
    assert index["releases"][0]["yanked"] is False  # nothing stored


def test_a_token_description_with_control_characters_is_refused(published) -> None:
    response = published.client.post(
        "/api/v1/namespaces/acme/tokens",
        json={"scope": "publish", "description": "ci\x1b]0;title\x07"},
        headers=published.auth(scope="admin"),
    )
    assert _error(response)[:2] == (422, "invalid_request")
    with published.session() as session, pytest.raises(RegistryError, match="U\\+001B"):
        admin.create_token(session, "acme", "publish", admin.CLI_ACTOR, "x\x1b[2K")


@pytest.mark.parametrize(
    ("training", "accepted"),
    [
        ({"init_text": "Be kind.\nBe safe.\tAlways."}, True),
        ({"init_text": "Be kind.\x1b[2K"}, False),
        ({"data": {"source\x07": "x"}}, False),
        ({"notes": ["fine", "\u202ereversed"]}, False),
    ],
)
def test_manifest_text_with_control_characters_is_refused(
    acme, make_patch, training: dict, accepted: bool
) -> None:
    response = acme.upload(make_patch(training=training))
    if accepted:
        assert response.status_code == 201, response.text
    else:
        status, code, message = _error(response)
        assert (status, code) == (422, "invalid_patch")
        assert "manifest training" in message and "control character" in message
        assert acme.blob_count() == 0
