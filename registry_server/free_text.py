"""Free text the registry stores and shows (yank reasons, token descriptions, the strings of a
manifest): no control characters, so nothing a publisher writes can move a terminal's cursor,
erase a line or reorder text when a client prints it.

Refused: C0 and C1 controls and DEL, lone surrogates, and the bidirectional embedding, override
and isolate characters (the "Trojan Source" ones). Multi-line manifest strings (an init text, a
data description) may keep newline and tab.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator

__all__ = ["FreeText", "control_character_problem", "json_text_problem"]

_OTHERS = "\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(f"[\x00-\x1f{_OTHERS}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")


def control_character_problem(text: str, *, multiline: bool = False) -> str | None:
    """What is wrong with `text`, or None when it holds no control character."""
    found = (_CONTROL_BUT_LINES if multiline else _CONTROL).search(text)
    if found is None:
        return None
    return (
        f"contains the control character U+{ord(found.group()):04X} at position "
        f"{found.start()}; control characters are not allowed"
    )


def _check(text: str) -> str:
    problem = control_character_problem(text)
    if problem:
        raise ValueError(problem)
    return text


FreeText = Annotated[str, AfterValidator(_check)]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, str(key)
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def json_text_problem(value: Any, path: str) -> str | None:
    """The first string (key or value) under `value` with a control character, described."""
    for where, text in _strings(value, path):
        problem = control_character_problem(text, multiline=True)
        if problem:
            return f"{where} {problem}"
    return None
