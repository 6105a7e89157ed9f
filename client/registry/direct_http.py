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
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from ppatch import __version__
from ppatch.errors import UsageError, VerificationError

__all__ = [
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "ForeignOriginError",
    "check_origin",
    "direct_connection_possible",
    "open_connection",
    "origin_of",
    "registry_headers",
    "request_target",
    "same_host_headers",
    "tls_context",
    "token_allowed",
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


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ForeignOriginError(VerificationError):
    """A download pointed (directly or by a redirect) outside the allowed origins."""


def origin_of(url: str) -> str:
    """`scheme://host[:port]`, lower-cased: what two URLs must share to be one origin."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def check_origin(url: str, allowed: Iterable[str]) -> None:
    """Raise `ForeignOriginError` unless `url` is on one of the `allowed` origins."""
    origins = {origin_of(item) for item in allowed}
    if origin_of(url) not in origins:
        raise ForeignOriginError(
            f"refusing to download {url}: blobs come only from the registry or a configured "
            f"mirror ({', '.join(sorted(origins))})"
        )


def token_allowed(url: str) -> bool:
    """A bearer token travels over https only, or over http to this machine (tests, a tunnel)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.hostname or "") in _LOOPBACK_HOSTS


def registry_headers(token: str | None, base_url: str) -> dict[str, str]:
    """The headers every registry request carries, whichever transport sends it.

    A token for a plain-http registry elsewhere is refused: it would cross the network in clear.
    """
    headers = {"User-Agent": f"ppatch/{__version__}"}
    if token:
        if not token_allowed(base_url):
            raise UsageError(
                f"refusing to send the registry token to {base_url} over plain http; "
                "use the registry's https URL"
            )
        headers["Authorization"] = f"Bearer {token}"
    return headers


def same_host_headers(headers: Mapping[str, str], url: str, origin: str) -> dict[str, str]:
    """`headers` for a request to `url`; `Authorization` only while still on `origin`'s origin.

    A redirect to another host, port or scheme (https -> http on the same host too) must not
    carry the registry token there.
    """
    keep_token = origin_of(url) == origin_of(origin) and token_allowed(url)
    return {
        key: value for key, value in headers.items() if keep_token or key.lower() != "authorization"
    }
