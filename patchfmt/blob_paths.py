"""Where a registry serves a `.ppatch` file: by its sha256, under one URL path both sides know.

The server routes `BLOB_ROUTE` and writes `blob_url` into its indexes; the client falls back to
`blob_url` for a lock entry that records no URL.
"""

from __future__ import annotations

__all__ = ["BLOB_ROUTE", "blob_url"]

BLOB_ROUTE = "/blobs/sha256/{digest}"


def blob_url(sha256: str) -> str:
    """The path, relative to the registry's base URL, of the blob with this hex digest."""
    return BLOB_ROUTE.format(digest=sha256)
