"""The package index (ETag, 304, Cache-Control), yank and unyank."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from registry_server.models import AuditEvent

FP_A = "sha256:" + "a" * 64


@pytest.fixture
def published(acme, make_patch):
    for seed, version in enumerate(["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]):
        response = acme.upload(make_patch(version=version, seed=seed))
        assert response.status_code == 201, response.text
    return acme


def test_index_lists_releases_newest_first(published) -> None:
    response = published.client.get("/api/v1/packages/acme/toxicity")
    assert response.status_code == 200
    index = response.json()
    assert index["namespace"] == "acme" and index["name"] == "toxicity"
    assert index["domain"] == "toxicity"
    assert index["summary"] == "Lowers toxicity of tiny-model"
    assert [r["version"] for r in index["releases"]] == ["2.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0"]
    artifact = index["releases"][0]["artifacts"][0]
    assert set(artifact) == {"fingerprint", "sha256", "size", "url", "filename", "key_id"}
    assert artifact["filename"] == "acme-toxicity-2.0.0-rc.1-aaaaaaaaaaaa.ppatch"
    assert index["releases"][0]["created"].endswith("Z")


def test_index_answers_if_none_match_with_304(published) -> None:
    first = published.client.get("/api/v1/packages/acme/toxicity")
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    second = published.client.get("/api/v1/packages/acme/toxicity", headers={"If-None-Match": etag})
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["etag"] == etag
    weak = published.client.get(
        "/api/v1/packages/acme/toxicity", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert weak.status_code == 304
    stale = published.client.get(
        "/api/v1/packages/acme/toxicity", headers={"If-None-Match": '"stale"'}
    )
    assert stale.status_code == 200


@pytest.mark.parametrize("action", ["yank", "upload"])
def test_every_write_changes_the_etag(published, make_patch, action) -> None:
    etag = published.client.get("/api/v1/packages/acme/toxicity").headers["etag"]
    if action == "yank":
        published.client.post(
            "/api/v1/packages/acme/toxicity/releases/1.2.0/yank",
            json={"reason": "bad"},
            headers=published.auth(scope="yank"),
        )
    else:
        published.upload(make_patch(version="3.0.0", seed=9))
    response = published.client.get(
        "/api/v1/packages/acme/toxicity", headers={"If-None-Match": etag}
    )
    assert response.status_code == 200
    assert response.headers["etag"] != etag


def test_yank_covers_every_artifact_and_unyank_restores(published, make_patch) -> None:
    published.upload(make_patch(version="1.2.0", fingerprint="sha256:" + "b" * 64, seed=7))
    response = published.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.2.0/yank",
        json={"reason": "raises refusals on benign prompts"},
        headers=published.auth(scope="yank"),
    )
    assert response.status_code == 200
    assert response.json() == {
        "name": "acme/toxicity",
        "version": "1.2.0",
        "yanked": True,
        "reason": "raises refusals on benign prompts",
    }
    index = published.client.get("/api/v1/packages/acme/toxicity").json()
    release = next(r for r in index["releases"] if r["version"] == "1.2.0")
    assert release["yanked"] is True
    assert release["yanked_reason"] == "raises refusals on benign prompts"
    assert len(release["artifacts"]) == 2
    undone = published.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.2.0/unyank", headers=published.auth(scope="yank")
    )
    assert undone.json() == {
        "name": "acme/toxicity",
        "version": "1.2.0",
        "yanked": False,
        "reason": None,
    }
    with published.session() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["release.yank", "release.unyank"]


def test_admin_token_may_yank(published) -> None:
    response = published.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "old"},
        headers=published.auth(scope="admin"),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("version", "status", "code"),
    [("9.9.9", 404, "not_found"), ("1.2", 400, "invalid_request"), ("v1", 400, "invalid_request")],
)
def test_yank_of_missing_or_invalid_version(published, version, status, code) -> None:
    response = published.client.post(
        f"/api/v1/packages/acme/toxicity/releases/{version}/yank",
        json={"reason": "x"},
        headers=published.auth(scope="yank"),
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_package_is_404(acme) -> None:
    response = acme.client.get("/api/v1/packages/acme/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "package acme/nothing does not exist"}
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/packages/acme/%2e%2e",
        "/api/v1/packages/%2e%2e/toxicity",
        "/api/v1/packages/acme/..%2f..%2fetc",
        "/api/v1/packages/ACME/toxicity",
        "/api/v1/packages/acme/Toxicity",
        "/api/v1/packages/acme/" + "a" * 300,
        "/api/v1/packages/acme/tox%00icity",
        "/api/v1/packages/-acme/toxicity",
    ],
    ids=[
        "dotdot-name",
        "dotdot-ns",
        "slash-escape",
        "upper-ns",
        "upper-name",
        "long",
        "nul",
        "dash",
    ],
)
def test_path_tricks_in_names_are_refused(acme, make_patch, path) -> None:
    for response in (
        acme.client.get(path),
        acme.client.post(
            path + "/releases", files={"file": ("p", make_patch())}, headers=acme.auth()
        ),
    ):
        assert response.status_code in (400, 404), (path, response.status_code)
        assert response.json()["error"]["code"] in ("invalid_request", "not_found")
    assert acme.blob_count() == 0


def test_etag_lookup_recovers_after_a_lost_connection(published) -> None:
    import asyncio

    import psycopg
    from sqlalchemy.exc import OperationalError

    from registry_server.polling import etag_lookup_for

    lookup = etag_lookup_for(published.engine)
    url = published.settings.resolved_database_url

    def drop_connections() -> None:
        if url.startswith("sqlite"):
            lookup._statement._local.connection.driver_connection.close()
            return
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    async def scenario() -> None:
        etag = await lookup.fetch("acme", "toxicity")
        assert etag is not None
        assert await lookup.fetch("acme", "nothing") is None
        for _ in range(3):  # use every connection of the loop
            await lookup.fetch("acme", "toxicity")
        drop_connections()
        failures = 0
        for _ in range(8):  # each broken connection fails once, then reconnects
            try:
                assert await lookup.fetch("acme", "toxicity") == etag
            except OperationalError:
                failures += 1
        assert 1 <= failures <= 4
        assert await lookup.fetch("acme", "toxicity") == etag
        await lookup.aclose()

    asyncio.run(scenario())


def test_polling_hits_are_counted_under_the_index_route(published) -> None:
    etag = published.client.get("/api/v1/packages/acme/toxicity").headers["etag"]
    for _ in range(3):
        hit = published.client.get(
            "/api/v1/packages/acme/toxicity", headers={"If-None-Match": etag}
        )
        assert hit.status_code == 304
        assert hit.headers["etag"] == etag
        assert hit.headers["cache-control"] == "public, max-age=60, must-revalidate"
    metrics = published.local_client().get("/metrics").text
    assert (
        'ppatch_registry_requests_total{method="GET",route="/api/v1/packages/{ns}/{name}",'
        'status="304"} 3.0'
    ) in metrics


def test_polling_during_a_database_outage_is_503(published, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    lookup = published.app.state.registry.etag_lookup

    async def down(namespace, name):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(lookup, "fetch", down)
    response = published.client.get(
        "/api/v1/packages/acme/toxicity", headers={"If-None-Match": '"x"'}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
