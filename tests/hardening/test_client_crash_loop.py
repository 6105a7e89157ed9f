"""kill -9 of `ppatch install` in the middle of a download, ten times at varied moments (just
after the download began, part way through, with every byte in but not yet verified): after
each kill `ppatch list` shows the previous state, the store holds only whole blobs that hash
to their names and no installed record points at a missing or wrong blob, and the retried
install succeeds with the right sha256. Leftover temporary files of killed downloads do not
accumulate: the next download removes them.

The registry is a real `ppatch-registry serve`; the client reaches it through a loopback proxy
throttled to RATE bytes per second, so an 8 MiB download lasts about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import patchfmt
from ppatch import constants, store
from tests.client.conftest import write_tiny_model
from tests.hardening import live_registry as live

pytestmark = pytest.mark.timeout(600)

PPATCH = Path(sys.executable).parent / "ppatch"
ITERATIONS = 10
ROWS, WIDTH = 4096, 512  # float32: 8 MiB of weights
RATE = 8 * 1024 * 1024
# Where each kill lands, shuffled: as soon as the download's file exists, at a random share of
# its bytes, or once every byte is in (the client is verifying the signature and format).
MOMENTS = ["started"] * 2 + ["part way"] * 6 + ["all bytes in"] * 2


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The client's PPATCH_HOME, shared by the subprocesses and this process's store reads."""
    home = tmp_path / "client"
    monkeypatch.setenv("PPATCH_HOME", str(home))
    yield home


def _downloads() -> set[Path]:
    return set((constants.blobs_dir() / "tmp").glob("download-*.part"))


def _ppatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PPATCH), *args], env=env, capture_output=True, text=True, timeout=120
    )


def _installed(env: dict[str, str], model: Path) -> list[tuple[str, str, str]]:
    result = _ppatch(env, "list", "--model", str(model), "--json")
    assert result.returncode == 0, result.stderr
    return [(p["name"], p["version"], p["sha256"]) for p in json.loads(result.stdout)["packages"]]


def _kill_during_download(
    env: dict[str, str], model: Path, version: str, moment: str, size: int, rng: random.Random
) -> tuple[bool, int]:
    """Start `ppatch install` and SIGKILL it at `moment` of its download. Returns whether it
    was killed (False: it finished first) and how many bytes its download file held."""
    before = _downloads()
    threshold = {"started": 0, "part way": int(size * rng.uniform(0.1, 0.9))}.get(moment, size)
    process = subprocess.Popen(
        [str(PPATCH), "install", f"acme/toxicity@{version}", "--model", str(model)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    written = 0
    try:
        while process.poll() is None and time.monotonic() < deadline:
            for path in _downloads() - before:
                try:
                    written = path.stat().st_size
                except FileNotFoundError:  # verified and moved into the store meanwhile
                    continue
                if written >= threshold:
                    # The marker: the download file exists and holds `threshold` bytes while
                    # the install still runs.
                    # The kill landed only when it, not an exit of its own, ended the install.
                    os.killpg(process.pid, signal.SIGKILL)
                    return process.wait(timeout=10) == -signal.SIGKILL, written
            time.sleep(0.002)
        assert process.poll() is not None, f"ppatch install {version} did not finish in 60 s"
        return False, written
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _check_store(model_fingerprint: str) -> None:
    """Only whole blobs under blobs/sha256, and every installed record's blob is one of them."""
    for path in (constants.blobs_dir() / "sha256").rglob("*"):
        if path.is_file():
            digest = path.name.removesuffix(".ppatch")
            assert path == store.blob_path(digest), f"unexpected file {path}"
            assert store.file_sha256(path) == digest, f"partial or corrupt blob {path}"
    for patch in store.read_installed(model_fingerprint).patches:
        path = store.blob_path(patch.sha256)
        assert path.is_file() and store.file_sha256(path) == patch.sha256, patch


def test_kill_9_mid_download_leaves_nothing_partial(
    sqlite_url: str, tmp_path: Path, client_home: Path
) -> None:
    key = patchfmt.generate_private_key()
    token = live.prepare_registry(sqlite_url, key)
    model = write_tiny_model(tmp_path / "model", seed=3)
    fingerprint = patchfmt.fingerprint_model(model, cache_dir=tmp_path / "fingerprints")
    registry = live.LiveRegistry(tmp_path / "registry", sqlite_url)
    registry.start()
    proxy = live.TcpProxy(("127.0.0.1", registry.port), rate=RATE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env |= {"PPATCH_HOME": str(client_home), "PPATCH_REGISTRY": f"http://127.0.0.1:{proxy.port}"}
    rng = random.Random(20261128)
    moments = rng.sample(MOMENTS, len(MOMENTS))
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=registry.url, timeout=60) as client:
            for iteration in range(ITERATIONS):
                data = live.build_patch(
                    key,
                    f"1.0.{iteration}",
                    seed=iteration,
                    size=ROWS,
                    width=WIDTH,
                    fingerprint=fingerprint,
                )
                answer = live.publish(client, token, data)
                assert answer.status_code == 201, answer.text
                digests[f"1.0.{iteration}"] = hashlib.sha256(data).hexdigest()
                sizes[f"1.0.{iteration}"] = len(data)
            small = live.build_patch(key, "2.0.0", fingerprint=fingerprint)
            assert live.publish(client, token, small).status_code == 201
        published = time.monotonic()

        previous: list[tuple[str, str, str]] = []
        killed = finished_first = 0
        most_leftovers = 0
        last_kill = time.monotonic()
        for iteration, moment in enumerate(moments):
            version = f"1.0.{iteration}"
            expected = ("acme/toxicity", version, digests[version])
            was_killed, written = _kill_during_download(
                env, model, version, moment, sizes[version], rng
            )
            # Before the last byte (the proxy paces the download), the kill must land
            # mid-download; once every byte is in, the install may finish first.
            assert was_killed or moment == "all bytes in", f"iteration {iteration} ({moment})"
            killed += was_killed
            finished_first += not was_killed
            last_kill = time.monotonic() if was_killed else last_kill
            after = _installed(env, model)
            # Killed: the previous state, untouched. Finished first: the new version, whole.
            assert after == (previous if was_killed else [expected]), (
                f"iteration {iteration} ({moment}, {written} bytes): {after}"
            )
            _check_store(fingerprint)
            most_leftovers = max(most_leftovers, len(_downloads()))

            retry = _ppatch(env, "install", f"acme/toxicity@{version}", "--model", str(model))
            assert retry.returncode == 0, retry.stderr
            assert _installed(env, model) == [expected]
            _check_store(fingerprint)
            previous = [expected]
        loop_seconds = time.monotonic() - published

        # The last kill's file may still be within the lock grace; past it, the next download
        # removes every leftover.
        time.sleep(
            max(0.0, last_kill + store.UNLOCKED_DOWNLOAD_GRACE_SECONDS + 1 - time.monotonic())
        )
        leftovers_before = len(_downloads())
        final = _ppatch(env, "install", "acme/toxicity@2.0.0", "--model", str(model))
        assert final.returncode == 0, final.stderr
        assert _downloads() == set()
        _check_store(fingerprint)
    finally:
        proxy.close()
        registry.kill()
    sys.stdout.write(
        f"\n{ITERATIONS} kill -9 iterations of ppatch install ({ROWS * WIDTH * 4 // 2**20} MiB at "
        f"{RATE // 2**20} MiB/s): {killed} killed ({', '.join(moments)}), {finished_first} "
        f"finished before the kill; loop {loop_seconds:.1f} s, total "
        f"{time.monotonic() - started:.1f} s; at most {most_leftovers} download files left at "
        f"once, {leftovers_before} before the final install, 0 after\n"
    )
