"""The folders above an output file: checked before long work, made only when it is written.

Files themselves are written by `patchfmt.atomic`, the one atomic writer. Commands that work
for a long time before they write (train, eval) call `check_parent_creatable` first, and make
the missing folders only when they write, so bad input fails at once and a failed run leaves
no folders behind. Commands whose work and write happen inside a library call (import-peft,
export-peft) wrap it in `parents_made_for`, which makes the folders first and removes them
again if the call fails.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

from ppatch.errors import ConflictError

__all__ = [
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
