"""When a registry request is tried again, and how long to wait first: one policy for both
transports (httpx in `ppatch.registry.client`, the standard library in
`ppatch.registry.json_transport`).

A request is retried after a connection failure or a 5xx answer when it is idempotent (GETs,
the read-only update check), and after a failure to open the connection whatever it is, since
then nothing reached the server. The wait doubles each time: `backoff * 2**attempt`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ppatch import constants

__all__ = ["RETRY_STATUSES", "NoAnswerError", "RetryPolicy"]

RETRY_STATUSES = frozenset({500, 502, 503, 504})

Answer = TypeVar("Answer")


class NoAnswerError(Exception):
    """A request that got no HTTP answer, raised by a transport's single attempt.

    `never_sent` is true when the connection could not be opened, so no byte of the request
    reached the server and even a non-idempotent request is safe to send again.
    """

    def __init__(self, detail: str, *, never_sent: bool) -> None:
        super().__init__(detail)
        self.never_sent = never_sent

    @classmethod
    def of(cls, error: BaseException, *, never_sent: bool) -> NoAnswerError:
        """The failure a transport's own `error` stands for; raise it `from error`."""
        return cls(str(error) or type(error).__name__, never_sent=never_sent)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def configured(
        cls,
        retries: int | None,
        backoff: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RetryPolicy:
        """The policy a transport was asked for; `retries=None` is `PPATCH_HTTP_RETRIES`'s."""
        return cls(constants.http_retries() if retries is None else retries, backoff, sleep)

    def pause(self, attempt: int) -> None:
        self.sleep(self.backoff * (2**attempt))

    def run(
        self,
        attempt: Callable[[], Answer],
        status: Callable[[Answer], int],
        *,
        idempotent: bool,
    ) -> Answer:
        """Call `attempt` until its answer is not worth retrying or the retries are spent.

        Returns the last answer, whatever its status (the caller maps errors); raises the last
        `NoAnswerError` when no attempt got an answer.
        """
        tries = 0
        while True:
            try:
                answer = attempt()
            except NoAnswerError as failure:
                if tries < self.retries and (idempotent or failure.never_sent):
                    self.pause(tries)
                    tries += 1
                    continue
                raise
            if idempotent and status(answer) in RETRY_STATUSES and tries < self.retries:
                self.pause(tries)
                tries += 1
                continue
            return answer
