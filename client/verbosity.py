"""How much the CLI says besides its results: `-q` and `-v`, set once by `ppatch.cli.main`.

Results (stdout) and errors are never affected. Level 0 is the default; each `-q` lowers it,
each `-v` raises it. At -1 notes and progress bars are silent, at -2 warnings too; at 1 the
CLI adds details (which registry, which model fingerprint); at 2 a failure shows its traceback.
"""

from __future__ import annotations

import sys

__all__ = ["detail", "level", "note", "set_level", "warn"]

_state = {"level": 0}


def set_level(value: int) -> None:
    _state["level"] = value


def level() -> int:
    return _state["level"]


def note(message: str) -> None:
    """Something a person watching may want to know; silent with -q."""
    if level() >= 0:
        print(message, file=sys.stderr)


def warn(message: str) -> None:
    """`ppatch: warning: ...`; silent only with -qq."""
    if level() >= -1:
        print(f"ppatch: warning: {message}", file=sys.stderr)


def detail(message: str) -> None:
    """Shown only with -v."""
    if level() >= 1:
        print(f"ppatch: {message}", file=sys.stderr)
