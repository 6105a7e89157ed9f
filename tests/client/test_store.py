"""The store: content-addressed blobs, atomic installed-set writes, one lock per model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ppatch import constants, store
from ppatch.errors import NotFoundError, UsageError
from ppatch.install import ModelTarget, record
from ppatch.store import CorruptStateError, InstalledPatch, InstalledSet

MODEL = "sha256:" + "ab" * 32


def add_blob(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with store.temporary_download() as (path, handle):
        handle.write(data)
        handle.flush()
        store.store_blob(path, digest)
    return digest


def entry(name: str, version: str, data: bytes | None = None) -> InstalledPatch:
    digest = add_blob(data if data is not None else f"{name}@{version}".encode())
    return InstalledPatch(name=name, version=version, sha256=digest, size=1)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith((".tmp-", "download-")))


def test_blobs_are_content_addressed() -> None:
    digest = add_blob(b"patch bytes")
    path = store.blob_path(digest)
    assert path == constants.blobs_dir() / "sha256" / digest[:2] / f"{digest}.ppatch"
    assert path.read_bytes() == b"patch bytes"
    assert store.has_blob(digest)
    assert store.file_sha256(path) == digest


def test_interrupted_download_leaves_nothing() -> None:
    with pytest.raises(KeyboardInterrupt), store.temporary_download() as (path, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt
    assert not path.exists()
    assert leftovers(constants.blobs_dir()) == []
    assert list((constants.blobs_dir()).glob("sha256/*/*")) == []


def test_installed_set_round_trips_in_install_order() -> None:
    state = InstalledSet(fingerprint=MODEL, model="/models/a")
    first, second = entry("acme/toxicity", "1.2.1"), entry("acme/bias", "0.1.0")
    state.put(first)
    state.put(second)
    store.write_installed(state)
    assert store.read_installed(MODEL) == state
    assert store.installed_patch_paths(MODEL) == [
        store.blob_path(first.sha256),
        store.blob_path(second.sha256),
    ]


def test_an_upgrade_keeps_its_place_in_the_order() -> None:
    state = InstalledSet(fingerprint=MODEL)
    for patch in (entry("acme/a", "1.0.0"), entry("acme/b", "1.0.0"), entry("acme/c", "1.0.0")):
        state.put(patch)
    state.put(entry("acme/a", "2.0.0"))
    assert [(p.name, p.version) for p in state.patches] == [
        ("acme/a", "2.0.0"),
        ("acme/b", "1.0.0"),
        ("acme/c", "1.0.0"),
    ]


def test_no_state_means_nothing_installed() -> None:
    assert store.read_installed(MODEL).patches == []
    assert store.installed_patch_paths(MODEL) == []


def test_a_failed_write_keeps_the_old_state(monkeypatch: pytest.MonkeyPatch) -> None:
    state = InstalledSet(fingerprint=MODEL, patches=[entry("acme/a", "1.0.0")])
    store.write_installed(state)
    before = store.read_installed(MODEL)

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    state.put(entry("acme/b", "1.0.0"))
    with pytest.raises(OSError, match="No space left"):
        store.write_installed(state)
    assert store.read_installed(MODEL) == before
    assert leftovers(constants.models_dir()) == []


def test_a_corrupt_state_file_is_reported_not_replaced() -> None:
    path = constants.models_dir() / f"{'ab' * 32}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CorruptStateError, match="is not valid JSON"):
        store.read_installed(MODEL)
    assert path.read_text() == "{not json"


def test_a_missing_blob_of_an_installed_patch_is_reported() -> None:
    patch = entry("acme/a", "1.0.0")
    store.write_installed(InstalledSet(fingerprint=MODEL, patches=[patch]))
    store.blob_path(patch.sha256).unlink()
    with pytest.raises(NotFoundError, match=r"acme/a 1\.0\.0 is installed but its file"):
        store.installed_patch_paths(MODEL)


@pytest.mark.parametrize("fingerprint", ["", "sha256:xyz", "md5:" + "a" * 64, "a" * 64])
def test_bad_fingerprints_are_refused(fingerprint: str) -> None:
    with pytest.raises(UsageError, match="is not valid: expected 'sha256:'"):
        store.read_installed(fingerprint)


def test_remove_of_a_package_not_installed_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="'acme/x' is not installed"):
        InstalledSet(fingerprint=MODEL).remove("acme/x")


def test_concurrent_records_on_one_model_serialize() -> None:
    """Without the lock, the slow read-modify-write below loses one side's update."""
    target = ModelTarget(path=Path("/models/a"), fingerprint=MODEL)
    entries = [entry(f"acme/p{n}", "1.0.0") for n in range(6)]
    errors: list[BaseException] = []

    def slow(_state: InstalledSet) -> None:
        time.sleep(0.02)

    def install(patch: InstalledPatch) -> None:
        try:
            record(target, [patch], before_write=slow)
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=install, args=(patch,)) for patch in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    installed = store.read_installed(MODEL)
    assert sorted(p.name for p in installed.patches) == sorted(p.name for p in entries)


# -- leftovers of killed downloads ------------------------------------------------------------


def _downloads() -> list[Path]:
    return sorted((constants.blobs_dir() / "tmp").glob("download-*.part"))


def _backdate(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_a_killed_download_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A real process dies with SIGKILL mid-download: its file stays, unlocked, until the next
    download removes it (once it is older than the instant between creating and locking)."""
    ready = tmp_path / "ready"
    code = (
        "import pathlib, time\n"
        "from ppatch import store\n"
        "with store.temporary_download() as (path, handle):\n"
        "    handle.write(b'half a patch'); handle.flush()\n"
        f"    pathlib.Path({str(ready)!r}).write_text(str(path))\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    leftover = Path(ready.read_text())
    _backdate(leftover, store.UNLOCKED_DOWNLOAD_GRACE_SECONDS + 1)
    assert store.remove_stale_downloads() == []  # still running: its lock protects it
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert _downloads() == [leftover]  # no cleanup ran in the killed process

    digest = add_blob(b"the next download")
    assert _downloads() == []
    assert store.blob_path(digest).read_bytes() == b"the next download"


def test_a_young_unlocked_file_is_kept() -> None:
    """It may be a download that created its file and has not locked it yet."""
    folder = constants.blobs_dir() / "tmp"
    folder.mkdir(parents=True)
    young = folder / "download-young.part"
    young.write_bytes(b"x")
    assert store.remove_stale_downloads() == []
    assert store.remove_stale_downloads(now=time.time() + 60) == [young]
    assert not young.exists()


def test_without_file_locks_only_day_old_files_are_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "_fcntl", None)
    folder = constants.blobs_dir() / "tmp"
    folder.mkdir(parents=True)
    hour, day = folder / "download-hour.part", folder / "download-day.part"
    for path, age in ((hour, 3600), (day, store.STALE_DOWNLOAD_SECONDS + 1)):
        path.write_bytes(b"x")
        _backdate(path, age)
    (folder / "unrelated.txt").write_bytes(b"not ours")
    _backdate(folder / "unrelated.txt", store.STALE_DOWNLOAD_SECONDS + 1)
    assert store.remove_stale_downloads() == [day]
    assert sorted(p.name for p in folder.iterdir()) == ["download-hour.part", "unrelated.txt"]
