"""A real `ppatch-registry serve` subprocess on SQLite under 8 publishing and 8 installing
threads: no 5xx, one row per successful publish, and rows and blobs agree afterwards (`fsck`).
(Killing the server mid-upload is tests/hardening/test_crash_loop.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import socket
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
from registry_server import admin
from registry_server.db import create_registry_engine, session_factory
from registry_server.fsck import ProblemKind, check_registry
from registry_server.migrations import upgrade
from registry_server.models import Release
from registry_server.storage import open_storage

SERVER = Path(sys.executable).parent / "ppatch-registry"
PACKAGE = "/api/v1/packages/acme/toxicity"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    home: Path
    engine: Engine
    token: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "PPATCH_REGISTRY_HOME": str(self.home),
            "PPATCH_REGISTRY_DATABASE_URL": f"sqlite:///{self.home / 'registry.db'}",
            "PPATCH_REGISTRY_STORAGE": str(self.home / "blobs"),
        }

    def start(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [str(SERVER), "serve", "--port", str(self.port)],
            env=self.environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("ppatch-registry serve did not become healthy")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def problems(self) -> list[tuple[ProblemKind, str]]:
        storage = open_storage(str(self.home / "blobs"))
        return [(p.kind, p.sha256) for p in check_registry(self.engine, storage)]

    def releases(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Release)) or 0)


@pytest.fixture
def registry(tmp_path: Path, signing_key: Ed25519PrivateKey) -> Iterator[Registry]:
    home = tmp_path / "registry"
    home.mkdir()
    engine = create_registry_engine(f"sqlite:///{home / 'registry.db'}")
    upgrade(engine)
    with session_factory(engine)() as session:
        admin.create_namespace(session, "acme", admin.CLI_ACTOR)
        pem = patchfmt.public_key_to_pem(signing_key.public_key())
        admin.add_key(session, "acme", pem, admin.CLI_ACTOR)
        issued = admin.create_token(session, "acme", "publish", admin.CLI_ACTOR)
        session.commit()
    registry = Registry(home, engine, issued.value)
    yield registry
    registry.stop()
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
    registry.start()
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

    assert not errors, errors
    assert not [s for s in publish_statuses + install_statuses if s >= 500]
    assert len(publish_statuses) == publishers * per_publisher
    # Distinct versions never conflict: every publish is a success, and only they are rows.
    assert set(publish_statuses) == {201}
    assert registry.releases() == publish_statuses.count(201)
    # Readers only ever see a missing package (before the first publish) or whole releases.
    assert set(install_statuses) <= {200, 404}
    assert install_statuses.count(200) > installers
    assert registry.problems() == []
    # The operator's view agrees: the real `fsck` command on the server's own configuration.
    fsck = subprocess.run(
        [str(SERVER), "fsck", "--json"],
        env=registry.environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout) == {"clean": True, "problems": []}
