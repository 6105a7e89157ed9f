"""The local store: content-addressed `.ppatch` blobs and each model's installed set.

Layout under `ppatch.constants.data_dir()`:
- `blobs/sha256/ab/<hex>.ppatch`: downloaded files, named by their sha256, never modified;
- `models/<fingerprint hex>.json`: the installed set of one model, in application order;
- `locks/<fingerprint hex>.lock`: a file lock per model, held while its installed set changes,
  so two concurrent `ppatch install`s on one model serialize instead of losing an update.

Every write is atomic (temporary file, then rename). A download goes to a unique temporary file
in `blobs/tmp/` and is renamed into place only after it was verified, so an interrupted or
refused download leaves nothing behind (huggingface_hub's `_download_to_tmp_and_move`). A
process killed mid-download (kill -9, power loss) cannot remove its temporary file: the
download holds an exclusive lock on that file while it runs, and the next download removes
every temporary file that nobody locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO

from patchfmt.atomic import atomic_write_text
from patchfmt.blob_paths import is_sha256_hex
from ppatch import constants
from ppatch.errors import NotFoundError, PpatchError, UsageError

if TYPE_CHECKING:
    import filelock

__all__ = [
    "CorruptStateError",
    "InstalledPatch",
    "InstalledSet",
    "blob_path",
    "file_sha256",
    "has_blob",
    "installed_blob",
    "installed_patch_paths",
    "installed_set_path",
    "model_lock",
    "read_installed",
    "remove_stale_downloads",
    "store_blob",
    "temporary_download",
    "write_installed",
]

STATE_FORMAT = "ppatch-installed/1"
_FINGERPRINT = re.compile(r"sha256:([0-9a-f]{64})")
LOCK_TIMEOUT_SECONDS = 300.0
_DOWNLOAD_PREFIX, _DOWNLOAD_SUFFIX = "download-", ".part"
# A download locks its temporary file right after creating it; this much age covers that
# instant, so an unlocked file older than it belongs to a process that died.
UNLOCKED_DOWNLOAD_GRACE_SECONDS = 10.0
# Where there are no advisory file locks (Windows), only files that no live download could
# still be writing: one that idled this long would have timed out long ago.
STALE_DOWNLOAD_SECONDS = 24 * 3600.0
_fcntl: ModuleType | None = None if sys.platform == "win32" else importlib.import_module("fcntl")


class CorruptStateError(PpatchError):
    """The installed-set file of a model cannot be read; it is never silently replaced."""


@dataclass(frozen=True)
class InstalledPatch:
    name: str  # namespace/name
    version: str
    sha256: str
    size: int | None = None
    registry: str | None = None
    url: str | None = None
    filename: str | None = None


@dataclass
class InstalledSet:
    fingerprint: str
    model: str | None = None
    patches: list[InstalledPatch] = field(default_factory=list)

    def find(self, name: str) -> InstalledPatch | None:
        for patch in self.patches:
            if patch.name == name:
                return patch
        return None

    def put(self, patch: InstalledPatch) -> None:
        """Add `patch`, or replace the same package in place: an upgrade keeps its position."""
        for position, existing in enumerate(self.patches):
            if existing.name == patch.name:
                self.patches[position] = patch
                return
        self.patches.append(patch)

    def remove(self, name: str) -> InstalledPatch:
        patch = self.find(name)
        if patch is None:
            raise NotFoundError(f"{name!r} is not installed on this model")
        self.patches.remove(patch)
        return patch


def _fingerprint_hex(fingerprint: str) -> str:
    match = _FINGERPRINT.fullmatch(fingerprint)
    if match is None:
        raise UsageError(
            f"fingerprint {fingerprint!r} is not valid: expected 'sha256:' and 64 hex digits"
        )
    return match.group(1)


def _check_sha256(sha256: str) -> str:
    if not is_sha256_hex(sha256):
        raise UsageError(f"sha256 {sha256!r} is not valid: expected 64 lowercase hex digits")
    return sha256


def blob_path(sha256: str) -> Path:
    _check_sha256(sha256)
    return constants.blobs_dir() / "sha256" / sha256[:2] / f"{sha256}.ppatch"


def has_blob(sha256: str) -> bool:
    return blob_path(sha256).is_file()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(constants.DOWNLOAD_CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _downloads_dir() -> Path:
    return constants.blobs_dir() / "tmp"


def _locked_by_someone(path: Path) -> bool:
    """True when a live download holds `path`'s lock (or the file is already gone)."""
    assert _fcntl is not None
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # finished or removed meanwhile: nothing to do
    try:
        _fcntl.flock(descriptor, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also releases the lock if we took it
    return False


def remove_stale_downloads(now: float | None = None) -> list[Path]:
    """Remove the temporary files of downloads whose process died; the removed paths.

    A running download locks its file, so any other process can tell a leftover from a file
    being written, whatever model the download is for.
    """
    now = time.time() if now is None else now
    removed = []
    for path in sorted(_downloads_dir().glob(f"{_DOWNLOAD_PREFIX}*{_DOWNLOAD_SUFFIX}")):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if _fcntl is None:
            if age < STALE_DOWNLOAD_SECONDS:
                continue
        elif age < UNLOCKED_DOWNLOAD_GRACE_SECONDS or _locked_by_someone(path):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def temporary_download() -> Iterator[tuple[Path, BinaryIO]]:
    """A unique temporary file beside the blobs, locked while it is open; removed on exit
    unless it was moved away. Leftovers of killed downloads are removed first."""
    folder = _downloads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_downloads()
    descriptor, name = tempfile.mkstemp(
        prefix=_DOWNLOAD_PREFIX, suffix=_DOWNLOAD_SUFFIX, dir=folder
    )
    if _fcntl is not None:
        _fcntl.flock(descriptor, _fcntl.LOCK_EX)  # released by the kernel however we exit
    path = Path(name)
    try:
        with os.fdopen(descriptor, "w+b") as handle:
            yield path, handle
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def store_blob(verified_file: Path, sha256: str) -> Path:
    """Move a verified file into the blob store under its digest (atomic rename)."""
    target = blob_path(sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    verified_file.replace(target)
    return target


def model_lock(fingerprint: str) -> filelock.BaseFileLock:
    # Imported here: filelock costs tens of milliseconds and read-only commands never lock.
    import filelock

    folder = constants.locks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(
        folder / f"{_fingerprint_hex(fingerprint)}.lock", timeout=LOCK_TIMEOUT_SECONDS
    )


def installed_set_path(fingerprint: str) -> Path:
    """The file holding a model's installed set (what `ppatch serve` watches for changes)."""
    return constants.models_dir() / f"{_fingerprint_hex(fingerprint)}.json"


def read_installed(fingerprint: str) -> InstalledSet:
    path = installed_set_path(fingerprint)
    try:
        data: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        return InstalledSet(fingerprint=fingerprint)
    except ValueError as error:
        raise CorruptStateError(f"{str(path)!r} is not valid JSON: {error}") from error
    try:
        if data["format"] != STATE_FORMAT or data["fingerprint"] != fingerprint:
            raise ValueError("format or fingerprint does not match")
        patches = [InstalledPatch(**entry) for entry in data["patches"]]
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptStateError(
            f"{str(path)!r} is not a ppatch installed-set file ({error})"
        ) from error
    return InstalledSet(fingerprint=fingerprint, model=data.get("model"), patches=patches)


def write_installed(state: InstalledSet) -> None:
    """Write a model's installed set atomically; callers hold `model_lock`."""
    document = {
        "format": STATE_FORMAT,
        "fingerprint": state.fingerprint,
        "model": state.model,
        "patches": [asdict(patch) for patch in state.patches],
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    atomic_write_text(installed_set_path(state.fingerprint), text, mode=None, make_parents=True)


def installed_blob(patch: InstalledPatch) -> Path:
    """The stored file of an installed patch; NotFoundError when it went missing."""
    path = blob_path(patch.sha256)
    if not path.is_file():
        raise NotFoundError(
            f"{patch.name} {patch.version} is installed but its file {str(path)!r} is "
            "missing; reinstall it with 'ppatch install'"
        )
    return path


def installed_patch_paths(fingerprint: str) -> list[Path]:
    """The installed `.ppatch` files of a model, in application order (oldest install first)."""
    return [installed_blob(patch) for patch in read_installed(fingerprint).patches]
