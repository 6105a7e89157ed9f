"""A real `ppatch-registry serve` subprocess under 8 publishing and 8 installing threads, on
SQLite and on PostgreSQL: no 5xx, one row per successful publish, and rows and blobs agree
afterwards (`fsck`). (Killing the server mid-upload is tests/hardening/test_crash_loop.py.)"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select

from registry_server.db import create_registry_engine
from registry_server.fsck import ProblemKind, check_registry
from registry_server.models import Artifact, Release
from registry_server.storage import open_storage
from tests.hardening import live_registry as live

PACKAGE = "/api/v1/packages/acme/toxicity"


@dataclass
class Registry:
    server: live.LiveRegistry
    engine: Engine
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    def problems(self) -> list[tuple[ProblemKind, str]]:
        storage = open_storage(str(self.server.storage))
        return [(p.kind, p.sha256) for p in check_registry(self.engine, storage)]

    def rows(self) -> tuple[int, int, int]:
        """Release rows, distinct versions among them, and artifact rows."""
        with self.engine.connect() as connection:
            releases = connection.scalar(select(func.count()).select_from(Release))
            versions = connection.scalar(select(func.count(func.distinct(Release.version))))
            artifacts = connection.scalar(select(func.count()).select_from(Artifact))
        return int(releases or 0), int(versions or 0), int(artifacts or 0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if request.param == "postgres":
        with live.postgres_database() as url:
            yield url
        return
    yield live.sqlite_database(tmp_path)


@pytest.fixture
def registry(tmp_path: Path, database: str, signing_key: Ed25519PrivateKey) -> Iterator[Registry]:
    token = live.prepare_registry(database, signing_key)
    server = live.LiveRegistry(tmp_path / "registry", database)
    engine = create_registry_engine(database)
    try:
        yield Registry(server, engine, token)
    finally:
        server.kill()
        engine.dispose()


def _publish(client: httpx.Client, token: str, data: bytes) -> httpx.Response:
    return client.post(
        f"{PACKAGE}/releases",
        files={"file": ("patch.ppatch", data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {token}"},
    )


def _install_once(client: httpx.Client) -> list[int]:
    """What `ppatch install` does over HTTP: the index, then every listed blob, hash-checked."""
    index = client.get(PACKAGE)
    statuses = [index.status_code]
    if index.status_code != 200:
        return statuses
    for release in index.json()["releases"]:
        for artifact in release["artifacts"]:
            blob = client.get(artifact["url"])
            statuses.append(blob.status_code)
            if blob.status_code == 200:
                assert hashlib.sha256(blob.content).hexdigest() == artifact["sha256"]
    return statuses


def test_publishers_and_installers_in_parallel(
    registry: Registry, make_patch: Callable[..., bytes]
) -> None:
    registry.server.start()
    started = time.monotonic()
    publishers, installers, per_publisher = 8, 8, 3
    patches = [
        [make_patch(version=f"1.{p}.{i}", seed=100 * p + i) for i in range(per_publisher)]
        for p in range(publishers)
    ]
    publish_statuses: list[int] = []
    install_statuses: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(publishers + installers)

    def publisher(mine: list[bytes]) -> None:
        try:
            with httpx.Client(base_url=registry.url, timeout=60) as client:
                start.wait()
                for data in mine:
                    publish_statuses.append(_publish(client, registry.token, data).status_code)
        except BaseException as error:
            errors.append(error)

    def installer() -> None:
        try:
            with httpx.Client(base_url=registry.url, timeout=60) as client:
                start.wait()
                while not done.is_set():
                    install_statuses.extend(_install_once(client))
                install_statuses.extend(_install_once(client))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=publisher, args=(mine,)) for mine in patches]
    readers = [threading.Thread(target=installer) for _ in range(installers)]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    for thread in readers:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started

    assert not errors, errors
    assert not [s for s in publish_statuses + install_statuses if s >= 500]
    assert len(publish_statuses) == publishers * per_publisher
    # Distinct versions never conflict: every publish is a success, and only they are rows.
    assert set(publish_statuses) == {201}
    # No lost and no duplicated rows: one release and one artifact per version published.
    assert registry.rows() == (len(publish_statuses),) * 3
    # Readers only ever see a missing package (before the first publish) or whole releases.
    assert set(install_statuses) <= {200, 404}
    assert install_statuses.count(200) > installers
    assert registry.problems() == []
    # The operator's view agrees: the real `fsck` command on the server's own configuration.
    fsck = registry.server.fsck("--json")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout) == {"clean": True, "problems": []}
    backend = registry.server.database_url.split(":", 1)[0].split("+", 1)[0]
    sys.stdout.write(
        f"\n{backend}: {len(publish_statuses)} publishes (all 201) and "
        f"{len(install_statuses)} install requests in {elapsed:.1f} s, no 5xx, fsck clean\n"
    )
