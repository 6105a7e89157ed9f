"""Small JSON requests to a registry over the standard library's `http.client`.

The transport of `ppatch.registry.update_check`, so that a cron job's `ppatch outdated` starts
without importing httpx (benchmarks/client.py). It behaves as
`ppatch.registry.client.RegistryClient` does for such a request: the same timeout and retry settings
and policy (`ppatch.registry.retry`), the same headers (User-Agent, bearer token), redirects
followed as httpx follows them with the token kept to the registry's host, error answers mapped by
`ppatch.registry.errors`, no answer at all a `NetworkError`. It opens a connection per request and
reads the whole body: answers are small. Callers check `direct_connection_possible` first, since
proxies are not handled here.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from ppatch import constants
from ppatch.errors import NetworkError
from ppatch.registry.direct_http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    open_connection,
    registry_headers,
    request_target,
    same_host_headers,
)
from ppatch.registry.errors import (
    AnswerTooLargeError,
    parse_json_object,
    registry_error,
    unreachable,
)
from ppatch.registry.retry import NoAnswerError, RetryPolicy

__all__ = ["JsonTransport"]

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    content: bytes
    method: str
    url: str


class JsonTransport:
    """JSON requests to one registry; no state is kept between requests."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = constants.http_timeout() if timeout is None else timeout
        self.retry = RetryPolicy.configured(retries, backoff, sleep)
        self._headers = registry_headers(token, self.base_url)

    def request(self, method: str, path: str, *, body: Any = None, idempotent: bool) -> JsonObject:
        """`method` on `path` (relative to the registry) with `body` as JSON; the answer's object.

        Raises the mapped `RegistryError` for an error answer, `UnexpectedResponseError` for a
        success that is not a JSON object, `NetworkError` when no answer came.
        """
        url = self.base_url + path
        content = None if body is None else json.dumps(body).encode()
        try:
            answer = self.retry.run(
                lambda: self._follow(method, url, content),
                lambda answer: answer.status,
                idempotent=idempotent,
            )
        except NoAnswerError as failure:
            raise unreachable(self.base_url, str(failure)) from failure.__cause__
        if answer.status >= 400:
            raise registry_error(
                answer.status,
                answer.content,
                reason=answer.reason,
                target=f"{answer.method} {answer.url}",
                url=answer.url,
            )
        return parse_json_object(
            answer.content, status=answer.status, url=answer.url, registry=self.base_url
        )

    def _follow(self, method: str, url: str, content: bytes | None) -> _Answer:
        """One attempt, following redirects: 307/308 repeat the request, 301-303 become a GET
        without a body (for a POST; httpx's rule)."""
        origin = url
        for _ in range(MAX_REDIRECTS + 1):
            answer, location = self._exchange(method, url, content, origin)
            if location is None:
                return answer
            url = urljoin(url, location)
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, content = "GET", None
        raise NetworkError(f"{origin} was redirected more than {MAX_REDIRECTS} times")

    def _exchange(
        self, method: str, url: str, content: bytes | None, origin: str
    ) -> tuple[_Answer, str | None]:
        """One request and its answer, with the redirect target when the answer is one."""
        headers = same_host_headers(self._headers, url, origin)
        if content is not None:
            headers["Content-Type"] = "application/json"
        connection = open_connection(url, self.timeout)
        try:
            try:
                connection.connect()
            except OSError as error:  # refused, unknown host, TLS refused, connect timeout
                raise NoAnswerError.of(error, never_sent=True) from error
            try:
                connection.request(method, request_target(url), body=content, headers=headers)
                response = connection.getresponse()
                data = response.read(constants.MAX_ANSWER_BYTES + 1)
                if len(data) > constants.MAX_ANSWER_BYTES:
                    raise AnswerTooLargeError(url, constants.MAX_ANSWER_BYTES)
                if response.length:  # a bounded read returns short at a close: still owed
                    raise http.client.IncompleteRead(data, response.length)
            except (OSError, http.client.HTTPException) as error:
                raise NoAnswerError.of(error, never_sent=False) from error
        finally:
            connection.close()
        answer = _Answer(response.status, response.reason, data, method, url)
        location = response.getheader("Location")
        if response.status in REDIRECT_STATUSES and location:
            return answer, location
        return answer, None
