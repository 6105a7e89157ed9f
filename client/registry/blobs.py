"""Stream a blob to disk at the speed of the socket, hashing in the same pass.

httpx parses HTTP/1.1 in pure Python (h11), which on a large body costs much of the throughput
curl gets from the same URL (benchmarks/client.py; the figures are in docs/architecture.md).
Blobs are immutable GETs, so their bodies are read with the standard library's `http.client`
instead: `readinto` a reused 1 MiB buffer, then hash and write the same memory. The retries and
error mapping stay in `ppatch.registry.client`: this module raises httpx's transport errors and
hands error answers back as `httpx.Response` objects so the caller treats both paths alike.

Used only when no proxy applies to the URL (`ppatch.registry.direct_http`); otherwise the
caller keeps httpx.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Callable, Mapping
from typing import BinaryIO
from urllib.parse import urljoin

import httpx

from ppatch import constants
from ppatch.registry.direct_http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    open_connection,
    request_target,
    same_host_headers,
)

__all__ = ["stream_blob"]


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
    origin = url
    for _ in range(MAX_REDIRECTS + 1):
        sent = same_host_headers(headers, url, origin)
        request = httpx.Request("GET", url, headers=sent)
        connection = open_connection(url, timeout)
        try:
            try:
                connection.request("GET", request_target(url), headers=sent)
                response = connection.getresponse()
            except TimeoutError as error:
                raise httpx.ConnectTimeout(str(error) or "timed out", request=request) from error
            except OSError as error:
                raise httpx.ConnectError(str(error) or type(error).__name__, request=request) from (
                    error
                )
            if response.status in REDIRECT_STATUSES and response.getheader("Location"):
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
