"""HTTP access to a ppatch registry (API v1): timeouts, retries, conditional index requests.

Idempotent requests (GETs, the read-only update check) are retried with exponential backoff on
connection errors and 5xx answers. Other requests are retried only when the connection could not
be opened, since then nothing reached the server (`ppatch.registry.retry`, shared with the
standard-library transport). Error answers become typed exceptions in `ppatch.registry.errors`;
an unreachable registry becomes `NetworkError` (exit code 6).

`ppatch outdated` does not come here unless a proxy applies: it uses `ppatch.registry.update_check`,
which avoids importing httpx.

Package indexes are cached on disk with their ETag and fetched with `If-None-Match`, so polling
(`ppatch outdated` in cron) costs a 304; with `PPATCH_OFFLINE` set the cache answers alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from patchfmt.atomic import atomic_write_bytes
from ppatch import constants
from ppatch.errors import NetworkError
from ppatch.registry.blobs import BlobSink, stream_blob
from ppatch.registry.direct_http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    check_origin,
    direct_connection_possible,
    registry_headers,
    same_host_headers,
)
from ppatch.registry.errors import (
    AnswerTooLargeError,
    UnexpectedResponseError,
    json_object,
    raise_for_status,
    refuse_offline,
    unreachable,
)
from ppatch.registry.retry import NoAnswerError, RetryPolicy
from ppatch.registry.update_check import UPDATES_PATH, update_results, updates_request

__all__ = ["RegistryClient"]

JsonObject = dict[str, Any]


class RegistryClient:
    """A session with one registry. Use as a context manager so connections are closed."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy.configured(retries, backoff, sleep)
        headers = registry_headers(token, self.base_url)
        # Where blobs may come from: the registry itself and the mirrors the user configured.
        self.blob_origins = [self.base_url, *constants.blob_mirrors()]
        self._transport = transport
        self._timeout = constants.http_timeout() if timeout is None else timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeout,
            transport=transport,
            follow_redirects=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the request loop -------------------------------------------------------------------

    def _refuse_offline(self, what: str) -> None:
        refuse_offline(self.base_url, what)

    def _unreachable(self, failure: NoAnswerError) -> NetworkError:
        return unreachable(self.base_url, str(failure))

    def _send(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        def attempt() -> httpx.Response:
            try:
                return self._capped(self._http.build_request(method, path, **kwargs))
            except httpx.TransportError as error:
                never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                raise NoAnswerError.of(error, never_sent=never_sent) from error

        try:
            response = self.retry.run(
                attempt, lambda answer: answer.status_code, idempotent=idempotent
            )
        except NoAnswerError as failure:
            raise self._unreachable(failure) from failure.__cause__
        raise_for_status(response)
        return response

    def _capped(self, request: httpx.Request) -> httpx.Response:
        """The answer to `request`, its decoded body read only up to `MAX_ANSWER_BYTES`.

        Counted after decompression, so a small compressed answer cannot expand without bound.
        """
        response = self._http.send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > constants.MAX_ANSWER_BYTES:
                    raise AnswerTooLargeError(str(request.url), constants.MAX_ANSWER_BYTES)
        finally:
            response.close()
        # The body is decoded already: the new answer must not say it is still compressed.
        headers = httpx.Headers(response.headers)
        for stale in ("Content-Encoding", "Content-Length"):
            headers.pop(stale, None)
        return httpx.Response(
            response.status_code, headers=headers, content=bytes(body), request=response.request
        )

    def _json(self, response: httpx.Response) -> JsonObject:
        return json_object(response, self.base_url)

    # -- API v1 -----------------------------------------------------------------------------

    def _index_cache_path(self, namespace: str, name: str) -> Path:
        registry_key = hashlib.sha256(self.base_url.encode()).hexdigest()[:16]
        return constants.index_cache_dir() / registry_key / namespace / f"{name}.json"

    def get_index(self, namespace: str, name: str) -> JsonObject:
        """The package index, revalidated with its ETag; offline, the cached copy."""
        cache_path = self._index_cache_path(namespace, name)
        cached: JsonObject | None = None
        try:
            cached = json.loads(cache_path.read_bytes())
        except (FileNotFoundError, ValueError):
            cached = None
        if constants.offline():
            if cached is None:
                raise NetworkError(
                    f"PPATCH_OFFLINE is set and {namespace}/{name} from {self.base_url!r} "
                    "is not in the local index cache"
                )
            index: JsonObject = cached["index"]
            return index
        headers = {}
        if cached is not None and cached.get("etag"):
            headers["If-None-Match"] = str(cached["etag"])
        response = self._send(
            "GET", f"/api/v1/packages/{namespace}/{name}", idempotent=True, headers=headers
        )
        if response.status_code == 304 and cached is not None:
            index = cached["index"]
            return index
        index = self._json(response)
        etag = response.headers.get("ETag")
        if etag:
            record = json.dumps({"etag": etag, "index": index}).encode()
            atomic_write_bytes(cache_path, record, mode=None, make_parents=True)
        return index

    def get_keys(self, namespace: str) -> JsonObject:
        self._refuse_offline(f"the keys of {namespace!r}")
        return self._json(
            self._send("GET", f"/api/v1/namespaces/{namespace}/keys", idempotent=True)
        )

    def search(
        self,
        query: str | None = None,
        *,
        domain: str | None = None,
        fingerprint: str | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[JsonObject]:
        self._refuse_offline("a search")
        params: dict[str, str | int | None] = {
            key: value
            for key, value in {
                "q": query,
                "domain": domain,
                "fingerprint": fingerprint,
                "name": name,
                "limit": limit,
            }.items()
            if value
        }
        body = self._json(self._send("GET", "/api/v1/search", idempotent=True, params=params))
        results = body.get("results", [])
        return [item for item in results if isinstance(item, dict)]

    def check_updates(self, installed: Sequence[Mapping[str, str]]) -> list[JsonObject]:
        """One batch request for every installed (name, version, fingerprint).

        `ppatch.registry.update_check.check_updates` does the same without importing httpx.
        """
        self._refuse_offline("an update check")
        # Read-only on the server, so as safe to repeat as a GET.
        response = self._send(
            "POST", UPDATES_PATH, idempotent=True, json=updates_request(installed)
        )
        return update_results(self._json(response))

    def publish(self, namespace: str, name: str, filename: str, data: bytes) -> JsonObject:
        """Upload a `.ppatch`; the server checks that its manifest names `namespace/name`.

        The answer gains `created`: False when the registry already had these exact bytes
        (it answers 200 instead of 201 and changes nothing)."""
        self._refuse_offline("publishing")
        files = {"file": (filename, data, "application/octet-stream")}
        response = self._send(
            "POST", f"/api/v1/packages/{namespace}/{name}/releases", idempotent=False, files=files
        )
        return {**self._json(response), "created": response.status_code == 201}

    def token_info(self) -> JsonObject:
        """The namespace and scope of this client's token (`GET /api/v1/token`)."""
        self._refuse_offline("checking the token")
        return self._json(self._send("GET", "/api/v1/token", idempotent=True))

    def set_yanked(
        self, namespace: str, name: str, version: str, *, yanked: bool, reason: str | None = None
    ) -> JsonObject:
        self._refuse_offline("yanking" if yanked else "unyanking")
        action = "yank" if yanked else "unyank"
        response = self._send(
            "POST",
            f"/api/v1/packages/{namespace}/{name}/releases/{version}/{action}",
            idempotent=False,
            json={"reason": reason},
        )
        return self._json(response)

    def _fetch_body(
        self,
        url: str,
        destination: BinaryIO,
        digest: hashlib._Hash,
        on_bytes: Callable[[int], None],
        max_bytes: int | None,
    ) -> httpx.Response | None:
        """One attempt: the body into `destination`, or the error answer (status >= 300)."""
        absolute = str(self._http.base_url.join(url))
        check_origin(absolute, self.blob_origins)
        if self._transport is None and direct_connection_possible(absolute):
            return stream_blob(
                absolute,
                self._http.headers,
                self._timeout,
                BlobSink(destination, digest, on_bytes, max_bytes),
                self.blob_origins,
            )
        sink = BlobSink(destination, digest, on_bytes, max_bytes)
        origin = absolute
        for _ in range(MAX_REDIRECTS + 1):
            # Redirects one at a time, each checked against the allowed origins before it is
            # followed (httpx would follow them anywhere), the token kept to the first origin.
            request = self._http.build_request("GET", absolute)
            kept = {key.lower() for key in same_host_headers(request.headers, absolute, origin)}
            if "authorization" not in kept:
                request.headers.pop("Authorization", None)
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("Location")
                if response.status_code in REDIRECT_STATUSES and location:
                    absolute = str(response.url.join(location))
                    check_origin(absolute, self.blob_origins)
                    continue
                if response.status_code >= 300:
                    response.read()
                    return response
                sink.expect(response.headers.get("Content-Length"), absolute)
                for chunk in response.iter_bytes(constants.DOWNLOAD_CHUNK_SIZE):
                    sink.write(chunk, absolute)
            finally:
                response.close()
            return None
        raise httpx.RemoteProtocolError(f"more than {MAX_REDIRECTS} redirects")

    def download(
        self,
        url: str,
        destination: BinaryIO,
        *,
        on_bytes: Callable[[int], None] = lambda _n: None,
        max_bytes: int | None = None,
    ) -> str:
        """Stream `url` (relative to the registry or absolute) into `destination`.

        Returns the sha256 hex digest of what was written, computed in the same pass. On a
        transport error the attempt restarts from an empty file. Only the registry's origin and
        the configured mirrors are contacted, redirects included (`ForeignOriginError`), and
        reading stops past `max_bytes` (`DownloadTooLargeError`).
        """
        self._refuse_offline(f"downloading {url!r}")

        digests: list[hashlib._Hash] = []  # one per attempt; the last is the file's

        def attempt() -> httpx.Response | None:
            destination.seek(0)
            destination.truncate()
            digests.append(hashlib.sha256())
            try:
                return self._fetch_body(url, destination, digests[-1], on_bytes, max_bytes)
            except httpx.TransportError as error:
                raise NoAnswerError.of(error, never_sent=False) from error

        try:
            # A blob is immutable: every attempt is safe, and each restarts from an empty file.
            failed = self.retry.run(
                attempt,
                lambda answer: 200 if answer is None else answer.status_code,
                idempotent=True,
            )
        except NoAnswerError as failure:
            raise self._unreachable(failure) from failure.__cause__
        if failed is not None:
            raise_for_status(failed)
            raise UnexpectedResponseError(
                f"{url} answered {failed.status_code} instead of the file",
                code="unexpected_response",
                status=failed.status_code,
                url=str(failed.request.url),
            )
        return digests[-1].hexdigest()
