"""Text from a registry made safe to print: whatever a registry sends (a yank reason, a
summary, an error message) reaches the terminal without control characters, so it cannot move
the cursor, erase a line such as a YANKED warning, or reorder what is shown."""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 and C1 controls, DEL, and the bidirectional embedding, override and isolate characters.
_OTHERS = "\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f{_OTHERS}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")


def printable(value: object, *, newlines: bool = False) -> str:
    """`value` as text with every control character removed (a plain newline kept when
    `newlines`, for text printed over several lines)."""
    return (_CONTROL_BUT_NEWLINE if newlines else _CONTROL).sub("", str(value))
