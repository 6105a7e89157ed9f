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
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO
from urllib.parse import urljoin

import httpx

from ppatch import constants
from ppatch.registry.direct_http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    check_origin,
    open_connection,
    request_target,
    same_host_headers,
)
from ppatch.registry.errors import DownloadTooLargeError

__all__ = ["BlobSink", "stream_blob"]


class BlobSink:
    """Where a blob's bytes go: hashed, written, counted, and refused past `max_bytes`."""

    def __init__(
        self,
        destination: BinaryIO,
        digest: hashlib._Hash,
        on_bytes: Callable[[int], None],
        max_bytes: int | None,
    ) -> None:
        self.destination = destination
        self.digest = digest
        self.on_bytes = on_bytes
        self.max_bytes = max_bytes
        self.written = 0

    def expect(self, content_length: str | None, url: str) -> None:
        """Refuse before reading when the declared length is already too long."""
        if self.max_bytes is None or content_length is None:
            return
        try:
            declared = int(content_length)
        except ValueError:
            return  # the count while reading still holds
        if declared > self.max_bytes:
            raise DownloadTooLargeError(url, self.max_bytes, declared)

    def write(self, chunk: bytes | memoryview, url: str) -> None:
        self.written += len(chunk)
        if self.max_bytes is not None and self.written > self.max_bytes:
            raise DownloadTooLargeError(url, self.max_bytes)
        self.digest.update(chunk)
        self.destination.write(chunk)
        self.on_bytes(len(chunk))


def stream_blob(
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    sink: BlobSink,
    allowed_origins: Sequence[str],
) -> httpx.Response | None:
    """Write the body of `url` into `sink`; None on success, else the error answer.

    Follows redirects within `allowed_origins` only (`ForeignOriginError` otherwise);
    `Authorization` is sent only to the original origin. Connection and read failures raise
    `httpx.ConnectError` / `httpx.ReadError` / `httpx.TimeoutException`.
    """
    origin = url
    for _ in range(MAX_REDIRECTS + 1):
        check_origin(url, allowed_origins)
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
            sink.expect(response.getheader("Content-Length"), url)
            _copy_body(response, sink, url, request)
            return None
        finally:
            connection.close()
    raise httpx.RemoteProtocolError(f"more than {MAX_REDIRECTS} redirects", request=request)


def _copy_body(
    response: http.client.HTTPResponse, sink: BlobSink, url: str, request: httpx.Request
) -> None:
    buffer = bytearray(constants.DOWNLOAD_CHUNK_SIZE)
    view = memoryview(buffer)
    try:
        while count := response.readinto(view):
            sink.write(view[:count], url)
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
