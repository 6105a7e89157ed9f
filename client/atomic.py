"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target.

A reader sees the old content or the new content, never a half-written file, and a crash
leaves at most a stray temporary file whose name starts with `.tmp-`.

Commands that work for a long time before they write (train, eval) call
`check_parent_creatable` first, and make the missing folders only when they write, so bad
input fails at once and a failed run leaves no folders behind. Commands whose work and write
happen inside a library call (import-peft, export-peft) wrap it in `parents_made_for`, which
makes the folders first and removes them again if the call fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ppatch.errors import ConflictError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_parent_creatable",
    "parents_made_for",
]


def check_parent_creatable(path: Path) -> None:
    """Raise `ConflictError` where the folders above `path` cannot be made: something that is
    not a folder (a file, a dangling link) stands where one of them would. Makes nothing."""
    for folder in path.parents:
        if folder.is_dir():
            return
        if folder.exists() or folder.is_symlink():
            raise ConflictError(f"cannot write {str(path)!r}: {str(folder)!r} is not a folder")


@contextlib.contextmanager
def parents_made_for(path: Path) -> Iterator[None]:
    """Make the missing folders above `path` for the block; if the block raises, remove the
    ones made here again, innermost first, so a failed command leaves no folders behind.

    Raises `ConflictError` (via `check_parent_creatable`) before making anything where a
    non-folder stands in the way. Only empty folders are removed: `rmdir` cannot take away
    anything another process put there meanwhile.
    """
    check_parent_creatable(path)
    missing = list(itertools.takewhile(lambda folder: not folder.is_dir(), path.parents))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in missing:  # path.parents runs innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` atomically; `mode` (e.g. 0o600) is set before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)
