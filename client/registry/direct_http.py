"""Standard-library HTTP connections to a registry, for the paths where httpx costs too much.

httpx is slow to import (with its dependencies, longer than the rest of an update check; the
figures are in docs/architecture.md) and parses HTTP/1.1 in pure Python. Blob downloads
(`ppatch.registry.blobs`) and the update check (`ppatch.registry.json_transport`) use
`http.client` instead, but only where no proxy applies:
`http.client` does not read the proxy variables that httpx honours, so with a proxy the callers
keep httpx. HTTPS trusts what httpx trusts (`tls_context`), so both transports accept the same
registries, and both send the same headers (`registry_headers`).
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from ppatch import __version__

__all__ = [
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "direct_connection_possible",
    "open_connection",
    "registry_headers",
    "request_target",
    "same_host_headers",
    "tls_context",
]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def direct_connection_possible(url: str) -> bool:
    """True for http(s) URLs that no proxy setting applies to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


def tls_context() -> ssl.SSLContext:
    """Verify certificates against what httpx uses: `SSL_CERT_FILE`, else `SSL_CERT_DIR`, else
    certifi's bundle (installed with httpx), not the system store."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    import certifi  # only for https, and it is small

    return ssl.create_default_context(cafile=certifi.where())


def open_connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """An unopened connection to `url`'s host; `timeout` bounds the connect and each read."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=tls_context())
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


def request_target(url: str) -> str:
    """The path and query that go on the request line."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def registry_headers(token: str | None) -> dict[str, str]:
    """The headers every registry request carries, whichever transport sends it."""
    headers = {"User-Agent": f"ppatch/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def same_host_headers(headers: Mapping[str, str], url: str, origin: str) -> dict[str, str]:
    """`headers` for a request to `url`; `Authorization` only while still on `origin`'s host.

    A redirect to another host must not carry the registry token there.
    """
    keep_token = urlsplit(url).netloc == urlsplit(origin).netloc
    return {
        key: value for key, value in headers.items() if keep_token or key.lower() != "authorization"
    }
