"""Atomic file writes: a temporary file in the target's folder, fsync, then rename.

The one writer the format library, the server and the client all use. Readers see the old file
or the new one, never half of one; a failure leaves nothing behind, and a crash at most a stray
temporary file whose name starts with `.tmp-`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(
    path: Path | str, data: bytes, *, mode: int | None = 0o644, make_parents: bool = False
) -> None:
    """Write `data` to `path` atomically with permissions `mode` (set before the rename).

    `mode=None` keeps the temporary file's owner-only permissions (0o600); `make_parents`
    makes the missing folders above `path` first, else a missing folder is an error.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}.")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            Path(temporary).chmod(mode)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(
    path: Path | str, text: str, *, mode: int | None = 0o644, make_parents: bool = False
) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode, make_parents=make_parents)
