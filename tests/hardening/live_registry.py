"""A real `ppatch-registry serve` process for the fault tests, and a TCP proxy to cut its
database connection. Loaded by path from the test files (the suite imports with importlib).

Not a conftest: the fault tests start and kill servers on purpose, so they own the processes.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import patchfmt
from registry_server import admin
from registry_server.db import create_registry_engine, session_factory
from registry_server.migrations import upgrade
from tests.ports import port_from_log

__all__ = [
    "POSTGRES_ADMIN_URL",
    "LiveRegistry",
    "TcpProxy",
    "build_patch",
    "postgres_database",
    "prepare_registry",
]

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FINGERPRINT = "sha256:" + "c" * 64
SERVE = Path(sys.executable).parent / "ppatch-registry"


def build_patch(
    key: Ed25519PrivateKey,
    version: str,
    *,
    seed: int = 0,
    size: int = 4,
    width: int = 8,
    fingerprint: str = FINGERPRINT,
) -> bytes:
    """A signed `acme/toxicity` patch of `size` virtual tokens x `width` float32 weights."""
    array = np.random.default_rng(seed).standard_normal((size, width)).astype(np.float32)
    weights = patchfmt.weights_from_array(array)
    manifest = patchfmt.build_manifest(
        {
            "name": "acme/toxicity",
            "version": version,
            "domain": "toxicity",
            "summary": "hardening",
            "license": "Apache-2.0",
            "base_model": {"id": "tiny-model", "fingerprint": fingerprint},
            "evaluation": {"toxicity_probability": 0.1},
            "created": "2026-11-28T10:00:00Z",
        },
        weights,
    )
    signature = patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    return patchfmt.pack_patch(manifest, weights, signature)


def sqlite_database(folder: Path) -> str:
    """The URL of a new, migrated SQLite database in `folder`."""
    url = f"sqlite:///{folder / 'registry.db'}"
    engine = create_registry_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped (with its connections) afterwards."""
    name = f"ppatch_hard_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        engine = create_registry_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_registry(database_url: str, key: Ed25519PrivateKey) -> str:
    """Namespace `acme` with `key` registered; returns an admin token for it."""
    engine = create_registry_engine(database_url)
    try:
        with session_factory(engine)() as session:
            admin.create_namespace(session, "acme", admin.CLI_ACTOR)
            pem = patchfmt.public_key_to_pem(key.public_key())
            admin.add_key(session, "acme", pem, admin.CLI_ACTOR)
            issued = admin.create_token(session, "acme", "admin", admin.CLI_ACTOR)
            session.commit()
    finally:
        engine.dispose()
    return issued.value


@dataclass
class LiveRegistry:
    """`ppatch-registry serve` in its own process group on a free loopback port."""

    home: Path
    database_url: str
    # 0 until the first start, when the server binds a port of its own choosing and the log
    # says which; a restart after a crash binds that same port again, so clients keep the URL.
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)  # more PPATCH_REGISTRY_* variables

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.home / "blobs"

    @property
    def log_path(self) -> Path:
        """The server's stderr, every run appended. A file, not a pipe: a pipe nobody reads
        fills at 64 KiB and the server's next log line then blocks its event loop for good
        (that was issue 8's "stops answering until restarted" once requests logged errors)."""
        return self.home / "serve.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "PPATCH_REGISTRY_HOME": str(self.home),
            "PPATCH_REGISTRY_DATABASE_URL": self.database_url,
            "PPATCH_REGISTRY_STORAGE": str(self.storage),
            **{f"PPATCH_REGISTRY_{name.upper()}": value for name, value in self.settings.items()},
        }

    def start(self, timeout: float = 30) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(SERVE), "serve", "--port", str(self.port), "--log-level", "info"],
                env=self.environment(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        process = self.process
        try:
            self.port = port_from_log(
                self.log_path, lambda: process.poll() is None, after=offset, timeout=timeout
            )
        except RuntimeError:
            self.kill()
            raise
        deadline = time.monotonic() + timeout  # a bound for a hung start, not a speed check
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ppatch-registry serve exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("ppatch-registry serve did not open its port in time")

    def kill(self) -> int | None:
        """SIGKILL, as a crash would: no cleanup runs in the server. The server's exit status
        (-9 when this kill ended it; anything else means it had already exited), or None when
        no server was running."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        status = self.process.wait(timeout=10)
        self.process = None
        return status

    def fsck(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ppatch-registry fsck ARGS` on this registry's configuration."""
        return subprocess.run(
            [str(SERVE), "fsck", *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )


def publish(
    client: httpx.Client, token: str, data: bytes, *, path: str = "acme/toxicity"
) -> httpx.Response:
    return client.post(
        f"/api/v1/packages/{path}/releases",
        files={"file": ("patch.ppatch", data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {token}"},
    )


class TcpProxy:
    """A loopback TCP proxy (to PostgreSQL unless told otherwise) that a test can cut (every
    live connection closed, new ones accepted and closed at once) and restore, without touching
    the service behind it. With `rate`, each connection forwards at most that many bytes per
    second in each direction (a slow network, so a download lasts long enough to be killed)."""

    def __init__(
        self, target: tuple[str, int] = ("127.0.0.1", 5432), *, rate: float | None = None
    ) -> None:
        self.target = target
        self.rate = rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # so close() is noticed by the accepting thread
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            with self._lock:
                refuse = self._cut or self._closed
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for source in readable:
                    chunk = source.recv(65536)
                    if not chunk:
                        return
                    peers[source].sendall(chunk)
                    if self.rate:
                        time.sleep(len(chunk) / self.rate)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                self._shut(sock)

    def _shut(self, sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._lock:
            if sock in self._live:
                self._live.remove(sock)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            live = list(self._live)
        for sock in live:
            self._shut(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(timeout=5)
