"""Blobs are named by their sha256: the digest rule, and the URL path a registry serves one at.

The server routes `BLOB_ROUTE` and writes `blob_url` into its indexes; the client falls back to
`blob_url` for a lock entry that records no URL. Every store (the server's, the client's cache)
and every file that records a digest (manifest, lockfile) accepts only `is_sha256_hex` names.
"""

from __future__ import annotations

import re

__all__ = ["BLOB_ROUTE", "SHA256_HEX", "blob_url", "is_sha256_hex"]

# Lowercase only: one spelling per digest, so a digest is also a safe, unique file name.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

BLOB_ROUTE = "/blobs/sha256/{digest}"


def blob_url(sha256: str) -> str:
    """The path, relative to the registry's base URL, of the blob with this hex digest."""
    return BLOB_ROUTE.format(digest=sha256)


def is_sha256_hex(text: object) -> bool:
    """True for 64 lowercase hex digits, the only spelling of a blob's name."""
    return isinstance(text, str) and SHA256_HEX.fullmatch(text) is not None
