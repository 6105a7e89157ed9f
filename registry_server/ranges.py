"""HTTP `Range` requests for blobs (RFC 9110 section 14): one byte range, or the whole blob."""

from __future__ import annotations

import re

__all__ = ["RangeNotSatisfiableError", "parse_range"]

_SINGLE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiableError(ValueError):
    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"range {header[:80]!r} is outside the blob's {size} bytes")
        self.header = header
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions asked for, or None to send the whole blob.

    A header that is not one well-formed byte range is ignored, as the RFC allows; a range that
    starts past the end raises `RangeNotSatisfiableError` (answered 416).
    """
    if not header:
        return None
    match = _SINGLE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiableError(header, size)
        return max(size - suffix, 0), size - 1 if size else 0
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        raise RangeNotSatisfiableError(header, size)
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)
