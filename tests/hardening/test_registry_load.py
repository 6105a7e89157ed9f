"""The registry under an anonymous load, measured on a real `ppatch-registry serve` (issue 16):

- one publisher's 30 releases with ~1 MB manifests (within the 1 MiB cap), then 8 parallel
  anonymous clients for 20 s asking for searches and (one request in four) the HTML pages:
  search p99 <= 50 ms (asserted in benchmark mode only: benchmarks/registry_load.py) and
  the server's resident memory grows by <= 150 MB;
- an 80 MB body to the anonymous update check, declared and undeclared (chunked): refused in
  <= 1 s, with the server's resident memory growing by <= 50 MB.

Memory is the server process's VmRSS from /proc, sampled through the window; the figures are
printed for docs/security.md ("Measured").
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import patchfmt
from tests.hardening import live_registry as live

pytestmark = pytest.mark.timeout(300)

RELEASES = 30
MANIFEST_BYTES = 1_000_000
CLIENTS = 8
WINDOW = 20.0
SEARCH_P99_LIMIT = 0.050
LOAD_GROWTH_LIMIT = 150 * 2**20
# A server with eight clients waiting on it runs flat out (one core: the GIL); given less than
# this share of a core over the window, it was starved by other processes on the machine.
STARVED_SHARE = 0.5
BIG_BODY = 80 * 2**20
BIG_BODY_SECONDS = 1.0
BIG_BODY_GROWTH_LIMIT = 50 * 2**20
MIB = 2**20


def rss(pid: int) -> int:
    """The resident memory of process `pid`, in bytes (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakMemory:
    """Samples a process's RSS on a thread until stopped; keeps the highest."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))


def _fields(version: str, scores: list[float]) -> dict[str, object]:
    return {
        "name": "acme/toxicity",
        "version": version,
        "domain": "toxicity",
        "summary": "Lowers toxicity of tiny-model",
        "license": "Apache-2.0",
        "base_model": {"id": "tiny-model", "fingerprint": live.FINGERPRINT},
        "evaluation": {"toxicity_probability": 0.1, "per_prompt": scores},
        "created": "2026-11-28T10:00:00Z",
    }


def per_prompt_scores() -> list[float]:
    """Per-prompt scores, as an evaluation might record them, just enough to make a manifest
    of about MANIFEST_BYTES (a little under, whatever the version's length)."""
    weights = patchfmt.weights_from_array(np.zeros((4, 8), dtype=np.float32))
    scores = np.random.default_rng(0).random(MANIFEST_BYTES // 18).round(15).tolist()
    size = len(patchfmt.build_manifest(_fields("1.0.0", scores), weights).canonical_bytes())
    per_score = size / len(scores)
    keep = len(scores) - int((size - MANIFEST_BYTES + 200) / per_score) - 1
    return scores[:keep]


def big_manifest_patch(key: Ed25519PrivateKey, version: str, scores: list[float]) -> bytes:
    """A signed acme/toxicity patch whose manifest holds `scores`."""
    weights = patchfmt.weights_from_array(np.zeros((4, 8), dtype=np.float32))
    manifest = patchfmt.build_manifest(_fields(version, scores), weights)
    signature = patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    return patchfmt.pack_patch(manifest, weights, signature)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.LiveRegistry]:
    folder = tmp_path_factory.mktemp("load")
    key = patchfmt.generate_private_key()
    url = live.sqlite_database(folder)
    token = live.prepare_registry(url, key)
    server = live.LiveRegistry(home=folder / "home", database_url=url)
    server.start()
    try:
        scores = per_prompt_scores()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for minor in range(RELEASES):
                data = big_manifest_patch(key, f"1.{minor}.0", scores)
                if minor == 0:
                    manifest = patchfmt.read_patch(data).manifest.canonical_bytes()
                    assert 0.99 * MANIFEST_BYTES <= len(manifest) <= MANIFEST_BYTES
                response = live.publish(client, token, data)
                assert response.status_code == 201, response.text
        yield server
    finally:
        server.kill()


def _hammer(
    url: str, deadline: float, searches: list[float], pages: list[float], errors: list[str]
) -> None:
    # Mostly the API, as clients poll; one request in four an HTML page, the package page
    # (whose manifest is the megabyte) or the list.
    searches_paths = ["/api/v1/search?q=toxicity", "/api/v1/search?q=acme", "/api/v1/search"]
    paths = [*searches_paths, "/p/acme/toxicity", *searches_paths, "/"]
    with httpx.Client(base_url=url, timeout=30) as client:
        turn = 0
        while time.monotonic() < deadline:
            path = paths[turn % len(paths)]
            turn += 1
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors.append(f"{path}: {response.status_code}")
            (searches if path.startswith("/api/") else pages).append(elapsed)


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def test_search_and_pages_under_load(loaded: live.LiveRegistry) -> None:
    assert loaded.process is not None
    pid = loaded.process.pid
    with httpx.Client(base_url=loaded.url) as client:  # warm: imports, caches, connections
        for path in ("/api/v1/search?q=toxicity", "/", "/p/acme/toxicity"):
            assert client.get(path).status_code == 200
        found = client.get("/api/v1/search?q=toxicity").json()["results"]
        assert [r["latest_version"] for r in found] == [f"1.{RELEASES - 1}.0"]
    before = rss(pid)
    searches: list[float] = []
    pages: list[float] = []
    errors: list[str] = []
    cpu_before = cpu_seconds(pid)
    deadline = time.monotonic() + WINDOW
    with PeakMemory(pid) as memory:
        threads = [
            threading.Thread(target=_hammer, args=(loaded.url, deadline, searches, pages, errors))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    growth = memory.peak - before
    cpu = cpu_seconds(pid) - cpu_before
    print(
        f"\nload: {len(searches)} searches p50 {np.percentile(searches, 50) * 1000:.1f} ms "
        f"p99 {_p99(searches) * 1000:.1f} ms; {len(pages)} pages p99 "
        f"{_p99(pages) * 1000:.1f} ms; server RSS {before / MIB:.0f} MB -> peak "
        f"{memory.peak / MIB:.0f} MB (growth {growth / MIB:.0f} MB); server CPU "
        f"{cpu:.1f} s in {WINDOW:.0f} s ({cpu / (len(searches) + len(pages)) * 1000:.1f} ms "
        f"per request); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    assert errors == []
    assert growth <= LOAD_GROWTH_LIMIT
    # Latency is a speed target, and speed targets are checked by a benchmark run, not by the
    # suite on a shared machine: `benchmarks/registry_load.py` runs this test with
    # PPATCH_LOAD_TARGETS=1, which asserts the p99. The suite asserts memory and errors.
    if os.environ.get("PPATCH_LOAD_TARGETS") != "1":
        return
    if _p99(searches) > SEARCH_P99_LIMIT and cpu < STARVED_SHARE * WINDOW:
        # Eight clients kept the server busy, yet it got under half a core: the machine's other
        # load, not the server, set the latency. Reported with the figures, never passed.
        pytest.xfail(
            f"search p99 {_p99(searches) * 1000:.0f} ms > 50 ms, but the server process was "
            f"given only {cpu / WINDOW:.2f} of a CPU (load average {os.getloadavg()[0]:.1f})"
        )
    assert _p99(searches) <= SEARCH_P99_LIMIT


def _send_big_body(port: int, *, declared: bool) -> tuple[float, bytes]:
    """POST BIG_BODY bytes to the update check, a MiB at a time, until the server answers;
    the seconds until its answer and the answer's first bytes."""
    head = b"POST /api/v1/updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += (
        f"Content-Length: {BIG_BODY}\r\n\r\n".encode()
        if declared
        else b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b'{"installed": [' + b" " * (MIB - 15)
    framed = chunk if declared else b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        for _ in range(BIG_BODY // MIB):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            with contextlib.suppress(OSError):  # the server may close as it answers
                sock.sendall(framed)
        sock.settimeout(10)
        answer = sock.recv(65536)
    return time.monotonic() - started, answer


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
def test_an_80_mb_update_check_is_refused_fast(loaded: live.LiveRegistry, declared: bool) -> None:
    assert loaded.process is not None
    pid = loaded.process.pid
    before = rss(pid)
    with PeakMemory(pid, every=0.01) as memory:
        seconds, answer = _send_big_body(loaded.port, declared=declared)
    growth = memory.peak - before
    print(
        f"\n80 MB body ({'declared' if declared else 'chunked'}): answered in "
        f"{seconds * 1000:.0f} ms, server RSS growth {growth / MIB:.1f} MB"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"payload_too_large"' in answer
    assert seconds <= BIG_BODY_SECONDS
    assert growth <= BIG_BODY_GROWTH_LIMIT
