"""Canonical JSON: the one byte form of anything that is hashed or signed.

Keys sorted by code point, no insignificant whitespace, UTF-8 without escaping non-ASCII
characters, no NaN or infinities, floats in their shortest round-trip form (Python's `repr`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json", "loads_strict"]


def canonical_json(value: Any) -> bytes:
    """Serialize `value` canonically; `ValueError` for NaN/Inf, `TypeError` for non-JSON types."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON refusing duplicate keys and NaN/Infinity; `ValueError` on any problem."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        # A crafted "[[[[..." within the size limits would otherwise escape every caller's
        # `except ValueError` (found by tests/patchfmt/test_fuzz_reader.py).
        raise ValueError("JSON is nested too deeply") from None
