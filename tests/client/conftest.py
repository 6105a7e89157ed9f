"""Fixtures for the client's tests: tiny models, signed patches, and a real registry.

The registry is `ppatch-registry serve` in a subprocess on a loopback port it binds itself, with
its own `PPATCH_REGISTRY_HOME`, set up once per session with the `ppatch-registry` admin
commands and loaded with the packages the end-to-end tests read. Tests that change the registry
(yank, tamper, key rotation) use packages of their own, so no test depends on another's order.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import save_file

from patchfmt import (
    build_manifest,
    fingerprint_model,
    pack_patch,
    public_key_to_pem,
    sign_manifest,
    weights_from_array,
)
from ppatch.cli.main import main as ppatch_main
from ppatch.registry.client import RegistryClient
from tests.ports import port_from_log

TOXICITY_VERSIONS = ("1.2.0", "1.2.1", "1.3.0")


def write_tiny_model(folder: Path, seed: int) -> Path:
    """A folder with a small `model.safetensors`: enough for a fingerprint."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    save_file(
        {
            "embed_tokens.weight": generator.standard_normal((16, 8)).astype(np.float32),
            "lm_head.weight": generator.standard_normal((16, 8)).astype(np.float32),
        },
        str(folder / "model.safetensors"),
    )
    return folder


def build_patch(
    name: str,
    version: str,
    fingerprint: str,
    key: Ed25519PrivateKey | None,
    *,
    size: tuple[int, int] = (4, 8),
    seed: int = 0,
) -> bytes:
    array = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    weights = weights_from_array(array)
    manifest = build_manifest(
        {
            "name": name,
            "version": version,
            "domain": "toxicity",
            "summary": f"{name} for tests",
            "license": "Apache-2.0",
            "base_model": {"id": "tests/tiny", "fingerprint": fingerprint},
            "created": "2026-11-28T10:00:00Z",
            "requires": "0.1.0",
        },
        weights,
    )
    signature = sign_manifest(manifest.canonical_bytes(), key) if key is not None else None
    return pack_patch(manifest, weights, signature)


@dataclass
class Registry:
    """A running `ppatch-registry serve` and what the tests need to drive it."""

    home: Path
    env: dict[str, str]
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # 0 until the first start, when the server binds a port of its own choosing (no race with
    # other processes); a restart (`stopped`) binds that same port again, because installed
    # patches and lockfiles record the registry's URL.
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log_path = self.home / "serve.log"
        # A file, not a pipe: a pipe nobody reads fills up and then blocks the server.
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "registry_server.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "info"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        process = self.process
        self.port = port_from_log(log_path, lambda: process.poll() is None, after=offset)
        deadline = time.monotonic() + 60  # a bound for a hung start, not a speed check
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"registry exited: {log_path.read_text(errors='replace')}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("registry did not become healthy within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def admin(self, *argv: str) -> str:
        """Run a `ppatch-registry` admin command in-process against this registry's home."""
        from registry_server.cli import main as registry_main

        names = ("PPATCH_REGISTRY_HOME", "PPATCH_REGISTRY_DATABASE_URL")
        saved = {name: os.environ.get(name) for name in names}
        for name in names:  # the server's own configuration
            if name in self.env:
                os.environ[name] = self.env[name]
            else:
                os.environ.pop(name, None)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                code = registry_main(list(argv))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        assert code == 0, f"ppatch-registry {' '.join(argv)} exited {code}"
        return out.getvalue().strip()

    def add_namespace(self, namespace: str, key: Ed25519PrivateKey) -> None:
        self.admin("namespace", "create", namespace)
        self.add_key(namespace, key)
        self.tokens[namespace] = self.admin("token", "create", namespace, "--scope", "admin")

    def add_key(self, namespace: str, key: Ed25519PrivateKey) -> None:
        pem_path = self.home / f"{namespace}-{len(self.keys)}.pub"
        pem_path.write_bytes(public_key_to_pem(key))
        self.admin("key", "add", namespace, str(pem_path))
        self.keys[namespace] = key

    def publish(self, data: bytes) -> dict[str, Any]:
        from patchfmt import read_patch

        name = read_patch(data).manifest.name
        namespace, short = name.split("/")
        with RegistryClient(self.url, token=self.tokens[namespace]) as client:
            return client.publish(namespace, short, f"{short}.ppatch", data)

    def blob_file(self, sha256: str) -> Path:
        matches = [p for p in (self.home / "blobs").rglob(f"*{sha256}*") if p.is_file()]
        assert len(matches) == 1, matches
        return matches[0]


@dataclass(frozen=True)
class Models:
    a: Path
    b: Path
    fingerprint_a: str
    fingerprint_b: str


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    a, b = write_tiny_model(root / "model-a", seed=1), write_tiny_model(root / "model-b", seed=2)
    cache = root / "fingerprint-cache"
    return Models(
        a, b, fingerprint_model(a, cache_dir=cache), fingerprint_model(b, cache_dir=cache)
    )


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def registry_database(backend: str, home: Path) -> Iterator[str | None]:
    """None for the registry's default (SQLite in its home), or the URL of a PostgreSQL
    database made for this session alone and dropped afterwards (the `test` database is
    shared by every developer's runs)."""
    if backend == "sqlite":
        yield None
        return
    import uuid

    import psycopg

    name = f"ppatch_client_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        if os.environ.get("PPATCH_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL is unreachable and PPATCH_SKIP_POSTGRES=1")
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {error}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models: Models
) -> Iterator[Registry]:
    """The end-to-end registry, once on SQLite and once on PostgreSQL."""
    home = tmp_path_factory.mktemp(f"registry-server-{request.param}")
    with registry_database(request.param, home) as database_url:
        yield from _loaded_registry(home, database_url, models)


def _loaded_registry(home: Path, database_url: str | None, models: Models) -> Iterator[Registry]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env["PPATCH_REGISTRY_HOME"] = str(home)
    if database_url is not None:
        env["PPATCH_REGISTRY_DATABASE_URL"] = database_url
    server = Registry(home=home, env=env)
    if database_url is not None:
        server.admin("db", "upgrade")
    for namespace, seed in (("acme", 1), ("beta", 2)):
        server.add_namespace(namespace, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))
    server.start()
    try:
        acme, beta = server.keys["acme"], server.keys["beta"]
        for position, version in enumerate(TOXICITY_VERSIONS):
            for fingerprint in (models.fingerprint_a, models.fingerprint_b):
                server.publish(
                    build_patch("acme/toxicity", version, fingerprint, acme, seed=position)
                )
        for name in ("acme/harm", "acme/fluency", "acme/bias"):
            server.publish(build_patch(name, "1.0.0", models.fingerprint_a, acme))
        server.publish(build_patch("beta/toxicity", "1.0.0", models.fingerprint_b, beta))
        yield server
    finally:
        server.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ppatch(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the `ppatch` CLI in-process: `ppatch("list", "--model", M)` -> Result."""

    def run(*argv: str | Path) -> Result:
        capsys.readouterr()
        try:
            code = ppatch_main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def stored_files() -> list[str]:
    """What installing writes: installed-set files and blobs (caches are not counted)."""
    from ppatch import constants

    found = []
    for folder in (constants.models_dir(), constants.blobs_dir()):
        if folder.exists():
            found += [str(p.relative_to(folder.parent)) for p in folder.rglob("*") if p.is_file()]
    return sorted(found)
