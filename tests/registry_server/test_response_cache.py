"""Cached search answers and pages (registry_server.response_cache): the same bytes as the
route's, never one change late, on one app or on two sharing a database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from registry_server import admin, pages
from registry_server.api.routes import search as search_route
from registry_server.db import create_registry_engine
from registry_server.main import create_app
from registry_server.response_cache import CachedAnswer, ResponseCache

CACHED_PATHS = ["/api/v1/search?q=tox", "/api/v1/search", "/", "/?q=acme", "/p/acme/toxicity"]


def _routes_fail(monkeypatch) -> None:
    """From now on the three cached routes fail (500): a 200 can only come from the cache."""

    def fail(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the route ran")

    monkeypatch.setattr(search_route, "search_packages", fail)
    monkeypatch.setattr(pages, "search_packages", fail)
    monkeypatch.setattr(pages, "_package_page_context", fail)


def _cache(harness) -> ResponseCache:
    cache: ResponseCache = harness.app.state.registry.response_cache
    return cache


def _latest(client: TestClient) -> str | None:
    found = client.get("/api/v1/search?q=tox").json()["results"]
    assert [r["name"] for r in found] == ["toxicity"]
    return found[0]["latest_version"]


@pytest.fixture
def published(acme, make_patch):
    assert acme.upload(make_patch()).status_code == 201
    return acme


@pytest.fixture
def other_app(published) -> Iterator[TestClient]:
    """A second registry app on the same database, with an engine of its own: another server
    process, as far as the cache can tell."""
    engine = create_registry_engine(published.settings.resolved_database_url)
    with TestClient(create_app(published.settings, engine=engine)) as client:
        yield client
    engine.dispose()


# -- the answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CACHED_PATHS)
def test_a_cached_answer_is_the_routes_answer(published, monkeypatch, path) -> None:
    fresh = published.client.get(path)
    assert fresh.status_code == 200
    _routes_fail(monkeypatch)
    cached = published.client.get(path)
    assert cached.status_code == 200
    assert cached.content == fresh.content
    assert cached.headers.items() == fresh.headers.items()  # security headers included
    assert "x-content-type-options" in cached.headers


def test_the_query_string_is_part_of_the_key(published, make_patch, monkeypatch) -> None:
    assert published.upload(make_patch(name="acme/bias"), path="acme/bias").status_code == 201
    assert [r["name"] for r in published.client.get("/api/v1/search?q=bias").json()["results"]] == [
        "bias"
    ]
    _routes_fail(monkeypatch)
    assert published.client.get("/api/v1/search?q=bias").status_code == 200
    assert published.client.get("/api/v1/search?q=tox").status_code == 500  # the route ran


def test_only_complete_answers_of_the_cached_routes_are_kept(published) -> None:
    assert published.client.get("/api/v1/search?limit=0").status_code == 422
    assert published.client.get("/p/acme/missing").status_code == 404
    assert published.client.get("/p/Acme/toxicity").status_code == 400
    assert published.client.get("/api/v1/packages/acme/toxicity").status_code == 200
    assert published.client.get("/healthz").status_code == 200
    assert len(_cache(published)) == 0
    assert published.client.get("/api/v1/search").status_code == 200
    assert len(_cache(published)) == 1


def test_head_requests_go_to_the_route(published) -> None:
    assert published.client.head("/api/v1/search").status_code in (200, 405)
    assert len(_cache(published)) == 0


def test_the_cache_can_be_turned_off(published, monkeypatch) -> None:
    settings = published.settings.model_copy(update={"response_cache_bytes": 0})
    app = create_app(settings, engine=published.engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(2):
            assert client.get("/api/v1/search?q=tox").status_code == 200
        assert len(client.app.state.registry.response_cache) == 0
        _routes_fail(monkeypatch)
        assert client.get("/api/v1/search?q=tox").status_code == 500  # the route ran


def test_without_the_generation_the_route_answers(published, monkeypatch) -> None:
    async def unreadable() -> str | None:
        raise OperationalError("SELECT generation", (), Exception("connection refused"))

    monkeypatch.setattr(published.app.state.registry.generation, "current", unreadable)
    for _ in range(2):
        assert published.client.get("/api/v1/search?q=tox").status_code == 200
    assert len(_cache(published)) == 0


def test_cached_answers_are_counted_under_their_route(published) -> None:
    for _ in range(3):
        assert published.client.get("/api/v1/search?q=tox").status_code == 200
    metrics = published.local_client().get("/metrics").text
    assert (
        'ppatch_registry_requests_total{method="GET",route="/api/v1/search",status="200"} 3.0'
        in metrics
    )


# -- never one change late --------------------------------------------------------------------


def test_a_publish_is_seen_by_the_next_request(published, make_patch) -> None:
    assert _latest(published.client) == "1.0.0"
    assert "1.1.0" not in published.client.get("/p/acme/toxicity").text
    assert published.upload(make_patch(version="1.1.0", seed=1)).status_code == 201
    assert _latest(published.client) == "1.1.0"
    assert "ppatch install acme/toxicity@1.1.0" in published.client.get("/p/acme/toxicity").text


def test_changes_made_through_another_app_are_seen_at_once(
    published, other_app, make_patch
) -> None:
    """Yank, unyank, publish and a key revocation, each made through the other app (another
    process on the same database), each seen by this app's next request."""
    assert _latest(published.client) == "1.0.0"
    page = published.client.get("/p/acme/toxicity").text
    assert "not-a-reason-yet" not in page and "(active)" in page

    yank = other_app.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "not-a-reason-yet"},
        headers=published.auth(scope="yank"),
    )
    assert yank.status_code == 200
    assert _latest(published.client) is None
    assert "not-a-reason-yet" in published.client.get("/p/acme/toxicity").text

    unyank = other_app.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/unyank",
        headers=published.auth(scope="yank"),
    )
    assert unyank.status_code == 200
    assert _latest(published.client) == "1.0.0"

    response = other_app.post(
        "/api/v1/packages/acme/toxicity/releases",
        files={"file": ("p.ppatch", make_patch(version="2.0.0", seed=2))},
        headers=published.auth(),
    )
    assert response.status_code == 201
    assert _latest(published.client) == "2.0.0"

    with published.session() as session:  # the admin command line, a third process
        key_id = admin.list_keys(session, "acme")[0].key_id
        admin.revoke_key(session, "acme", key_id, admin.CLI_ACTOR)
        session.commit()
    page = published.client.get("/p/acme/toxicity").text
    assert "(active)" not in page and "(revoked on " in page


def test_a_change_made_by_hand_is_seen_once_the_generation_is_replaced(published) -> None:
    """A row edited in SQL outside the registry is not noticed until the generation is
    replaced by hand, as docs/registry.md says to."""
    assert _latest(published.client) == "1.0.0"
    with published.engine.begin() as connection:
        connection.execute(text("UPDATE releases SET yanked = true, yanked_reason = 'by hand'"))
    assert _latest(published.client) == "1.0.0"  # cached: the documented limit
    random_hex = (
        "md5(random()::text)"
        if published.engine.dialect.name == "postgresql"
        else "lower(hex(randomblob(16)))"
    )
    with published.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE registry_state SET generation = {random_hex} WHERE id = 1")
        )
    assert _latest(published.client) is None
    assert "by hand" in published.client.get("/p/acme/toxicity").text


# -- the store --------------------------------------------------------------------------------


def _answer(body_bytes: int) -> CachedAnswer:
    return CachedAnswer(
        "/api/v1/search", ((b"content-type", b"application/json"),), b"x" * body_bytes
    )


def test_an_answer_is_served_only_at_the_generation_it_was_read_at() -> None:
    cache = ResponseCache(1_000_000)
    key = ("/api/v1/search", b"q=a")
    assert cache.get("g1", key) is None
    cache.put("g1", key, _answer(10))
    assert cache.get("g1", key) == _answer(10)
    assert cache.get("g2", key) is None  # another generation: everything older is dropped
    assert len(cache) == 0 and cache.size == 0
    cache.put("g1", key, _answer(10))  # computed from data read at g1, after g2 was met
    assert cache.get("g2", key) is None and len(cache) == 0


def test_the_store_holds_at_most_its_capacity_least_recently_used_out() -> None:
    keys = [("/api/v1/search", f"q={n:02}".encode()) for n in range(12)]
    one = _answer(1000).size(keys[0])
    cache = ResponseCache(9 * one + one // 2)  # room for nine answers, not ten
    assert cache.get("g", keys[0]) is None  # the generation met, as the middleware does
    for key in keys[:9]:
        cache.put("g", key, _answer(1000))
    assert cache.get("g", keys[0]) is not None  # now the most recently used
    for key in keys[9:]:
        cache.put("g", key, _answer(1000))
    kept = [key for key in keys if cache.get("g", key) is not None]
    assert kept == [keys[0], *keys[4:]]
    assert cache.size == 9 * one <= cache.capacity


def test_an_answer_over_an_eighth_of_the_capacity_is_not_kept() -> None:
    key = ("/", b"")
    cache = ResponseCache(80_000)
    cache.get("g", key)
    cache.put("g", key, _answer(10_001))
    assert len(cache) == 0
    cache.put("g", key, _answer(9_000))
    assert len(cache) == 1


def test_the_sizes_count_key_headers_and_body() -> None:
    answer = _answer(1000)
    # 14 + 3 (key) + 12 + 16 (header) + 1000 (body) + 256 (bookkeeping)
    assert answer.size(("/api/v1/search", b"q=a")) == 1301
