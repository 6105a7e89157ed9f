"""Fixtures of the registry's tests.

Every API test runs twice, on SQLite and on PostgreSQL (127.0.0.1:5432), each time with a clean
database copied from a template migrated once per session. PostgreSQL is always there in CI: when
it is unreachable the tests fail, unless PPATCH_SKIP_POSTGRES=1.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

import patchfmt
from registry_server import admin
from registry_server.config import Settings
from registry_server.db import create_registry_engine, session_factory
from registry_server.main import create_app
from registry_server.migrations import upgrade
from registry_server.models import Base
from tests.ports import uvicorn_port

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
FIXED_CREATED = "2026-11-28T10:00:00Z"


# -- patches ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return patchfmt.generate_private_key()


@pytest.fixture(scope="session")
def other_key() -> Ed25519PrivateKey:
    return patchfmt.generate_private_key()


def build_patch(
    key: Ed25519PrivateKey | None,
    *,
    name: str = "acme/toxicity",
    version: str = "1.0.0",
    fingerprint: str = FP_A,
    seed: int = 0,
    summary: str = "Lowers toxicity of tiny-model",
    domain: str = "toxicity",
    evaluation: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    tokens: int = 4,
    hidden: int = 8,
) -> bytes:
    """A real `.ppatch`; the same arguments always give the same bytes, `seed` changes them."""
    array = np.random.default_rng(seed).standard_normal((tokens, hidden)).astype(np.float32)
    weights = patchfmt.weights_from_array(array)
    manifest = patchfmt.build_manifest(
        {
            "name": name,
            "version": version,
            "domain": domain,
            "summary": summary,
            "license": "Apache-2.0",
            "base_model": {"id": "tiny-model", "fingerprint": fingerprint},
            "evaluation": {"toxicity_probability": 0.12} if evaluation is None else evaluation,
            "training": training or {},
            "created": FIXED_CREATED,
        },
        weights,
    )
    signature = None if key is None else patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    return patchfmt.pack_patch(manifest, weights, signature)


@pytest.fixture
def make_patch(signing_key: Ed25519PrivateKey) -> Callable[..., bytes]:
    def make(**kwargs: Any) -> bytes:
        key = kwargs.pop("key", signing_key)
        return build_patch(key, **kwargs)

    return make


# -- databases --------------------------------------------------------------------------------


def _postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _admin_sql(statement: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(statement)


def require_postgres() -> None:
    if _postgres_available():
        return
    if os.environ.get("PPATCH_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL is unreachable and PPATCH_SKIP_POSTGRES=1")
    pytest.fail(
        "PostgreSQL at 127.0.0.1:5432 is unreachable; start it, or set PPATCH_SKIP_POSTGRES=1"
    )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this session, migrated once and emptied before each test (creating a
    database per test costs a second each on PostgreSQL; emptying it costs milliseconds)."""
    require_postgres()
    name = f"ppatch_test_{uuid.uuid4().hex[:12]}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = create_registry_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    # DELETE, children first: on tables this small it is far cheaper than TRUNCATE, which
    # swaps every table's files. Then the generation row a migration writes, as on a freshly
    # migrated database.
    statements = "; ".join(
        f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)
    )
    statements += "; INSERT INTO registry_state (id, generation) VALUES (1, md5(random()::text))"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(statements)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    engine = create_registry_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database for one test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "registry.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    yield url


# -- the registry -----------------------------------------------------------------------------


@dataclass
class Harness:
    """A registry app on a clean database, with helpers for the admin steps of a test."""

    settings: Settings
    engine: Engine
    app: FastAPI
    client: TestClient
    signing_key: Ed25519PrivateKey
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def session(self) -> Any:
        return session_factory(self.engine)()

    def namespace(self, name: str, *, key: Ed25519PrivateKey | None = None) -> None:
        """Create `name` with `key` (default: the session's signing key) registered."""
        with self.session() as session:
            admin.create_namespace(session, name, admin.CLI_ACTOR)
            pem = patchfmt.public_key_to_pem((key or self.signing_key).public_key())
            admin.add_key(session, name, pem, admin.CLI_ACTOR)
            session.commit()

    def token(self, namespace: str, scope: str = "publish") -> str:
        if (namespace, scope) not in self.tokens:
            with self.session() as session:
                issued = admin.create_token(session, namespace, scope, admin.CLI_ACTOR)
                session.commit()
            self.tokens[(namespace, scope)] = issued.value
        return self.tokens[(namespace, scope)]

    def auth(self, namespace: str = "acme", scope: str = "publish") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(namespace, scope)}"}

    def upload(
        self,
        data: bytes,
        *,
        path: str = "acme/toxicity",
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.client.post(
            f"/api/v1/packages/{path}/releases",
            files={"file": ("patch.ppatch", data, "application/octet-stream")},
            headers=self.auth() if headers is None else headers,
        )

    def local_client(self) -> TestClient:
        """A client of the same app from a loopback address (the TestClient's default address
        is not an IP), as a scraper on the server's machine would be."""
        return TestClient(self.app, client=("127.0.0.1", 50000), raise_server_exceptions=False)

    def blob_count(self) -> int:
        root = Path(self.settings.resolved_storage) / "sha256"
        return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        storage=str(tmp_path / "blobs"),
        max_upload_bytes=256 * 1024,
    )


@pytest.fixture
def harness(settings: Settings, signing_key: Ed25519PrivateKey) -> Iterator[Harness]:
    engine = create_registry_engine(settings.resolved_database_url)
    app = create_app(settings, engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Harness(settings, engine, app, client, signing_key)
    engine.dispose()


@pytest.fixture
def acme(harness: Harness) -> Harness:
    """The harness with namespace `acme` and the signing key registered to it."""
    harness.namespace("acme")
    return harness


# -- real servers -----------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def start_live_server(app: FastAPI) -> LiveServer:
    """uvicorn serving `app` on a loopback port it binds itself (port 0, read back), in a
    thread of this process. The app's lifespan runs on the server's loop so that the lookup
    connections that loop opens (the generation and ETag reads on PostgreSQL) are closed when it
    stops, instead of leaking as unclosed psycopg connections."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10  # a bound for a hung start, not a speed check
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{uvicorn_port(server)}", server, thread)


def stop_live_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


@pytest.fixture
def live_server(acme: Harness) -> Iterator[LiveServer]:
    live = start_live_server(acme.app)
    yield live
    stop_live_server(live)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port it binds itself (port 0, read back from its socket),
    in a thread of this process, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket is bound and listening
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
