"""A real `ppatch-registry serve` subprocess under 8 publishing and 8 installing threads, on
SQLite and on PostgreSQL: no 5xx, one row per successful publish, and rows and blobs agree
afterwards (`fsck`). (Killing the server mid-upload is tests/hardening/test_crash_loop.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
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

import patchfmt
from patchfmt import fingerprint_model, parse_version
from registry_server.db import create_registry_engine
from registry_server.fsck import ProblemKind, check_registry
from registry_server.models import Artifact, Release
from registry_server.storage import open_storage
from tests.client.conftest import write_tiny_model
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


PPATCH = Path(sys.executable).parent / "ppatch"


def _install_once(env: dict[str, str], model: Path) -> int:
    """The real `ppatch install` (its own process and home): it resolves the index, downloads,
    hash- and signature-checks the blob and records it, or exits non-zero saying why."""
    result = subprocess.run(
        [str(PPATCH), "install", "acme/toxicity", "--model", str(model)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Before the first publish the package does not exist yet: exit 4, nothing else.
    assert result.returncode in (0, 4), result.stderr
    return result.returncode


def _installed(env: dict[str, str], model: Path) -> list[tuple[str, str, str]]:
    result = subprocess.run(
        [str(PPATCH), "list", "--model", str(model), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [(p["name"], p["version"], p["sha256"]) for p in json.loads(result.stdout)["packages"]]


def test_publishers_and_installers_in_parallel(
    registry: Registry, make_patch: Callable[..., bytes], tmp_path: Path
) -> None:
    registry.server.start()
    started = time.monotonic()
    publishers, installers, per_publisher = 8, 4, 3
    model = write_tiny_model(tmp_path / "model", seed=4)
    fingerprint = fingerprint_model(model, cache_dir=tmp_path / "fingerprints")
    patches = [
        [
            make_patch(version=f"1.{p}.{i}", seed=100 * p + i, fingerprint=fingerprint)
            for i in range(per_publisher)
        ]
        for p in range(publishers)
    ]
    publish_statuses: list[int] = []
    install_statuses: list[int] = []
    homes = [tmp_path / f"client-{number}" for number in range(installers)]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    envs = [
        {**base_env, "PPATCH_HOME": str(home), "PPATCH_REGISTRY": registry.url,
         "PPATCH_NO_PROGRESS": "1"}
        for home in homes
    ]  # fmt: skip
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

    def installer(env: dict[str, str]) -> None:
        try:
            start.wait()
            while not done.is_set():
                install_statuses.append(_install_once(env, model))
            install_statuses.append(_install_once(env, model))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=publisher, args=(mine,)) for mine in patches]
    readers = [threading.Thread(target=installer, args=(env,)) for env in envs]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    for thread in readers:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started

    assert not errors, errors
    assert not [s for s in publish_statuses if s >= 500]
    assert len(publish_statuses) == publishers * per_publisher
    # Distinct versions never conflict: every publish is a success, and only they are rows.
    assert set(publish_statuses) == {201}
    # No lost and no duplicated rows: one release and one artifact per version published.
    assert registry.rows() == (len(publish_statuses),) * 3
    # Installs only ever found no package yet (exit 4) or installed a whole, verified release;
    # the last install of each client, after every publish, holds the newest version.
    assert set(install_statuses) <= {0, 4}
    newest = max(
        (data for mine in patches for data in mine),
        key=lambda data: parse_version(str(patchfmt.read_patch(data).manifest.version)),
    )
    expected = (
        "acme/toxicity",
        str(patchfmt.read_patch(newest).manifest.version),
        hashlib.sha256(newest).hexdigest(),
    )
    for env in envs:
        assert _installed(env, model) == [expected]
    assert install_statuses.count(0) >= installers
    assert registry.problems() == []
    # The operator's view agrees: the real `fsck` command on the server's own configuration.
    fsck = registry.server.fsck("--json")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout) == {"clean": True, "problems": []}
    backend = registry.server.database_url.split(":", 1)[0].split("+", 1)[0]
    sys.stdout.write(
        f"\n{backend}: {len(publish_statuses)} publishes (all 201) and "
        f"{len(install_statuses)} `ppatch install` runs in {elapsed:.1f} s, no 5xx, fsck clean\n"
    )
