"""The registry under an anonymous load, measured on a real `ppatch-registry serve` (issue 16):

- one publisher's 30 releases with ~1 MB manifests (within the 1 MiB cap), then 8 parallel
  anonymous clients for 20 s asking for searches and (one request in four) the HTML pages:
  search p99 <= 50 ms and the server's resident memory grows by <= 150 MB;
- an 80 MB body to the anonymous update check, declared and undeclared (chunked): refused in
  <= 1 s, with the server's resident memory growing by <= 50 MB.

Memory is the server process's VmRSS from /proc, sampled through the window; the figures are
printed for docs/security.md ("Measured"). The p99 is asserted unless the machine's other load
starved the server or the clients of CPU over the window (see `cpu_given_share`): then the test
reports the figures as an expected failure rather than passing or failing on someone else's load.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
# Given less than this share of the CPU time it was ready to use (the rest it spent runnable,
# waiting for a CPU that other processes held), a process was starved over the window.
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


@dataclass
class SchedulerTimes:
    """Seconds some threads ran on a CPU, and seconds they were runnable but waited for one
    (the kernel's schedstat: what other processes on the machine took from them)."""

    running: float = 0.0
    waiting: float = 0.0

    @classmethod
    def read(cls, path: Path) -> SchedulerTimes:
        running, waiting, _slices = path.read_text().split()
        return cls(int(running) / 1e9, int(waiting) / 1e9)

    @classmethod
    def of_process(cls, pid: int) -> SchedulerTimes:
        """Summed over the process's threads alive now."""
        total = cls()
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += cls.read(task / "schedstat")
        return total

    @classmethod
    def of_this_thread(cls) -> SchedulerTimes:
        return cls.read(Path("/proc/thread-self/schedstat"))

    def __add__(self, other: SchedulerTimes) -> SchedulerTimes:
        return SchedulerTimes(self.running + other.running, self.waiting + other.waiting)

    def __sub__(self, other: SchedulerTimes) -> SchedulerTimes:
        return SchedulerTimes(self.running - other.running, self.waiting - other.waiting)

    def cpu_given_share(self) -> float:
        """The share of the CPU time these threads were ready to use that they got.

        Not the share of a core: a server that answers from its cache is idle most of the
        window, so a low CPU share says nothing about starvation; time spent runnable on a
        CPU's queue does."""
        wanted = self.running + self.waiting
        return self.running / wanted if wanted else 1.0


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


@dataclass
class Measured:
    searches: list[float]
    pages: list[float]
    errors: list[str]
    clients: SchedulerTimes


def _hammer(port: int, deadline: float, measured: Measured, lock: threading.Lock) -> None:
    """One client on one keep-alive connection: mostly the API, as clients poll; one request
    in four an HTML page, the package page (whose manifest is the megabyte) or the list.

    Plain http.client, not httpx: the latency measured is the server's, and eight httpx
    clients sharing this process's GIL spent more than twice the server's CPU per request,
    so their own contention was most of the figure."""
    searches_paths = ["/api/v1/search?q=toxicity", "/api/v1/search?q=acme", "/api/v1/search"]
    paths = [*searches_paths, "/p/acme/toxicity", *searches_paths, "/"]
    searches: list[float] = []
    pages: list[float] = []
    errors: list[str] = []
    scheduled = SchedulerTimes.of_this_thread()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        turn = 0
        while time.monotonic() < deadline:
            path = paths[turn % len(paths)]
            turn += 1
            started = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                errors.append(f"{path}: {error!r}")
                connection.close()  # reconnects on the next request
                continue
            elapsed = time.perf_counter() - started
            if response.status != 200:
                errors.append(f"{path}: {response.status}")
            (searches if path.startswith("/api/") else pages).append(elapsed)
    finally:
        connection.close()
        scheduled = SchedulerTimes.of_this_thread() - scheduled
        with lock:
            measured.searches += searches
            measured.pages += pages
            measured.errors += errors
            measured.clients += scheduled


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
    measured = Measured([], [], [], SchedulerTimes())
    lock = threading.Lock()
    cpu_before = cpu_seconds(pid)
    server_before = SchedulerTimes.of_process(pid)
    deadline = time.monotonic() + WINDOW
    with PeakMemory(pid) as memory:
        threads = [
            threading.Thread(target=_hammer, args=(loaded.port, deadline, measured, lock))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    growth = memory.peak - before
    cpu = cpu_seconds(pid) - cpu_before
    server = SchedulerTimes.of_process(pid) - server_before
    searches, pages = measured.searches, measured.pages
    p99 = _p99(searches)
    print(
        f"\nload: {len(searches)} searches p50 {np.percentile(searches, 50) * 1000:.1f} ms "
        f"p99 {p99 * 1000:.1f} ms; {len(pages)} pages p50 "
        f"{np.percentile(pages, 50) * 1000:.1f} ms p99 {_p99(pages) * 1000:.1f} ms; server RSS "
        f"{before / MIB:.0f} MB -> peak {memory.peak / MIB:.0f} MB (growth {growth / MIB:.0f} "
        f"MB); server CPU {cpu:.1f} s in {WINDOW:.0f} s "
        f"({cpu / (len(searches) + len(pages)) * 1000:.2f} ms per request); CPU given: server "
        f"{server.cpu_given_share():.2f}, clients {measured.clients.cpu_given_share():.2f} of "
        f"what they were ready to use; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    assert measured.errors == []
    assert growth <= LOAD_GROWTH_LIMIT
    starved = min(server.cpu_given_share(), measured.clients.cpu_given_share()) < STARVED_SHARE
    if p99 > SEARCH_P99_LIMIT and starved:
        # The machine's other load, not the server, set the latency: reported with the figures,
        # never passed.
        pytest.xfail(
            f"search p99 {p99 * 1000:.0f} ms > 50 ms, but the server got "
            f"{server.cpu_given_share():.2f} and the clients "
            f"{measured.clients.cpu_given_share():.2f} of the CPU time they were ready to use "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
    assert p99 <= SEARCH_P99_LIMIT


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
