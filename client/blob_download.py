"""Stream a blob to disk at the speed of the socket, hashing in the same pass.

httpx parses HTTP/1.1 in pure Python (h11), which on a 50 MB body costs a third or more of the
throughput curl gets from the same URL (benchmarks/client.py). Blobs are immutable GETs, so
their bodies are read with the standard library's `http.client` instead: `readinto` a reused
1 MiB buffer, then hash and write the same memory. Everything else (JSON API, retries, error
mapping) stays on httpx; this module raises httpx's transport errors and hands error answers
back as `httpx.Response` objects so the caller treats both paths alike.

Used only when no proxy applies to the URL: `http.client` does not read the proxy variables
that httpx honours, and then the caller keeps httpx.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from ppatch import constants

__all__ = ["direct_download_possible", "stream_blob"]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def direct_download_possible(url: str) -> bool:
    """True for http(s) URLs that no proxy setting applies to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


def stream_blob(
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    destination: BinaryIO,
    digest: hashlib._Hash,
    on_bytes: Callable[[int], None],
) -> httpx.Response | None:
    """Write the body of `url` to `destination`; None on success, else the error answer.

    Follows redirects; `Authorization` is sent only to the original host. Connection and read
    failures raise `httpx.ConnectError` / `httpx.ReadError` / `httpx.TimeoutException`.
    """
    origin = urlsplit(url).netloc
    for _ in range(MAX_REDIRECTS + 1):
        sent = {
            key: value
            for key, value in headers.items()
            if key.lower() != "authorization" or urlsplit(url).netloc == origin
        }
        request = httpx.Request("GET", url, headers=sent)
        connection = _connection(url, timeout)
        try:
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                connection.request("GET", target or "/", headers=sent)
                response = connection.getresponse()
            except TimeoutError as error:
                raise httpx.ConnectTimeout(str(error) or "timed out", request=request) from error
            except OSError as error:
                raise httpx.ConnectError(str(error) or type(error).__name__, request=request) from (
                    error
                )
            if response.status in _REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location", ""))
                continue
            if response.status >= 300:
                return httpx.Response(
                    response.status,
                    headers=response.getheaders(),
                    content=response.read(),
                    request=request,
                )
            _copy_body(response, destination, digest, on_bytes, request)
            return None
        finally:
            connection.close()
    raise httpx.RemoteProtocolError(f"more than {MAX_REDIRECTS} redirects", request=request)


def _copy_body(
    response: http.client.HTTPResponse,
    destination: BinaryIO,
    digest: hashlib._Hash,
    on_bytes: Callable[[int], None],
    request: httpx.Request,
) -> None:
    buffer = bytearray(constants.DOWNLOAD_CHUNK_SIZE)
    view = memoryview(buffer)
    try:
        while count := response.readinto(view):
            chunk = view[:count]
            digest.update(chunk)
            destination.write(chunk)
            on_bytes(count)
    except TimeoutError as error:
        raise httpx.ReadTimeout(str(error) or "timed out", request=request) from error
    except (OSError, http.client.HTTPException) as error:
        raise httpx.ReadError(str(error) or type(error).__name__, request=request) from error
    # `readinto` returns 0 at a closed connection even when Content-Length promised more;
    # `length` is what is still owed.
    if response.length:
        raise httpx.ReadError(
            f"connection closed with {response.length} bytes of the body missing",
            request=request,
        )
