"""The shape of a registry API token, `ppr_<16 hex id>_<43 base64url secret>`.

One home for a rule both sides obey: the registry issues and parses tokens in this shape, and
`ppatch login` refuses anything else before saving it, so a pasted fragment or a stray word is
caught at once instead of at the first publish.
"""

from __future__ import annotations

import re

__all__ = ["TOKEN_PATTERN", "TOKEN_PREFIX", "looks_like_token"]

TOKEN_PREFIX = "ppr_"
TOKEN_PATTERN = re.compile(r"ppr_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})")


def looks_like_token(text: str) -> bool:
    return TOKEN_PATTERN.fullmatch(text) is not None
