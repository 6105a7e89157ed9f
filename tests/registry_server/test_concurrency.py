"""Races: concurrent uploads of one version, and several servers sharing one database and store."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry_server import upload
from registry_server.db import create_registry_engine
from registry_server.main import create_app
from registry_server.models import Artifact


def _artifacts(acme) -> int:
    with acme.session() as session:
        return int(session.scalar(select(func.count()).select_from(Artifact)))


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_uploads_of_one_version_one_wins(acme, live_server, make_patch, round_) -> None:
    version = f"1.{round_}.0"
    bodies = [make_patch(version=version, seed=10 * round_ + i) for i in range(2)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send(data: bytes) -> None:
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            barrier.wait()
            response = client.post(
                "/api/v1/packages/acme/toxicity/releases",
                files={"file": ("p.ppatch", data)},
                headers=acme.auth(),
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(data,)) for data in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201, 409]
    assert _artifacts(acme) == 1
    assert acme.blob_count() == 1


def test_a_race_lost_at_the_constraint_is_409_and_leaves_no_blob(
    acme, make_patch, monkeypatch
) -> None:
    # Make the pre-check blind, as if the other upload committed just after it ran: only the
    # database's unique constraint stands between the two.
    assert acme.upload(make_patch(seed=1)).status_code == 201
    real = upload.existing_outcome
    calls = []

    def blind_once(*args, **kwargs):
        calls.append(1)
        return None if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(upload, "existing_outcome", blind_once)
    response = acme.upload(make_patch(seed=2))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_exists"
    assert len(calls) == 2
    assert _artifacts(acme) == 1
    assert acme.blob_count() == 1


def test_a_race_with_identical_bytes_is_a_no_op(acme, make_patch, monkeypatch) -> None:
    data = make_patch(seed=1)
    assert acme.upload(data).status_code == 201
    real = upload.existing_outcome
    calls = []

    def blind_once(*args, **kwargs):
        calls.append(1)
        return None if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(upload, "existing_outcome", blind_once)
    assert acme.upload(data).status_code == 200
    assert acme.blob_count() == 1  # the winner's blob is kept


def test_several_servers_behave_as_one_registry(acme, make_patch) -> None:
    # A second app on the same database and store: what one writes, the other serves at once.
    engine = create_registry_engine(acme.settings.resolved_database_url)
    with TestClient(create_app(acme.settings, engine=engine)) as other:
        assert acme.upload(make_patch()).status_code == 201
        first = acme.client.get("/api/v1/packages/acme/toxicity")
        second = other.get("/api/v1/packages/acme/toxicity")
        assert first.headers["etag"] == second.headers["etag"]
        assert first.json() == second.json()
        yanked = other.post(
            "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
            json={"reason": "bad"},
            headers=acme.auth(scope="yank"),
        )
        assert yanked.status_code == 200
        after = acme.client.get(
            "/api/v1/packages/acme/toxicity", headers={"If-None-Match": first.headers["etag"]}
        )
        assert after.status_code == 200
        assert after.json()["releases"][0]["yanked"] is True
        url = after.json()["releases"][0]["artifacts"][0]["url"]
        assert other.get(url).status_code == 200
    engine.dispose()
