"""API tokens: `ppr_<id>_<secret>`. The id finds the row; only the secret's sha256 is stored,
and it is compared in constant time. A token belongs to one namespace and has one scope:
`publish` (upload), `yank` (yank and unyank) or `admin` (everything, including tokens and keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from patchfmt.tokens import TOKEN_PATTERN, TOKEN_PREFIX

__all__ = [
    "TOKEN_PREFIX",
    "IssuedToken",
    "ParsedToken",
    "hash_secret",
    "issue_token",
    "parse_token",
    "scope_allows",
    "secret_matches",
]

_TOKEN = TOKEN_PATTERN


@dataclass(frozen=True)
class ParsedToken:
    token_id: str
    secret: str


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    secret_hash: str
    value: str  # shown once to the person who asked for it, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def issue_token() -> IssuedToken:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedToken(token_id, hash_secret(secret), f"{TOKEN_PREFIX}{token_id}_{secret}")


def parse_token(value: str) -> ParsedToken | None:
    """The token's parts, or None when `value` is not shaped like a registry token."""
    match = _TOKEN.fullmatch(value)
    if match is None:
        return None
    return ParsedToken(match["id"], match["secret"])


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def scope_allows(held: str, needed: str) -> bool:
    return held == "admin" or held == needed
