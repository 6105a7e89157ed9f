"""A request as the engine sees it (`Job`), the events it sends back, and each choice's row.

`Row` sees each new token of one choice: it decodes the row's text, emits what is safe to send
(holding back what could still become a stop sequence or an incomplete UTF-8 character), and
ends the row on EOS, a stop sequence, its own `max_tokens`, or a cancelled request.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ppatch.serve.sampling import Sampling

if TYPE_CHECKING:
    from ppatch.serve.served_sets import ServedSet

__all__ = ["Delta", "Event", "Failed", "Finished", "Job", "Row", "eos_ids_of"]


@dataclass(frozen=True)
class Delta:
    index: int
    text: str


@dataclass(frozen=True)
class Finished:
    index: int
    reason: str  # "stop" or "length"
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


Event = Delta | Finished | Failed
_job_numbers = itertools.count()


@dataclass(eq=False)
class Job:
    """One request: `prompts[i]` is the token ids of choice `i` (the same prompt `n` times)."""

    served: ServedSet
    prompts: Sequence[Sequence[int]]
    max_tokens: int
    stop: tuple[str, ...]
    sampling: Sampling
    emit: Callable[[Event], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    number: int = field(default_factory=lambda: next(_job_numbers))

    def batch_key(self) -> int:
        """Jobs with equal keys may share a running batch: the same patch set (and snapshot).

        Sampling parameters are per row, so they do not split batches; patch sets do, so a
        request finishes on the set it started with.
        """
        return id(self.served.patched)


class Row:
    """One choice being generated: its tokens, what was sent, and why it ended."""

    def __init__(self, job: Job, index: int, tokenizer: Any, eos_ids: frozenset[int]):
        self.job, self.index = job, index
        self.tokenizer, self.eos_ids = tokenizer, eos_ids
        self.tokens: list[int] = []
        self.sent = 0
        self.generated = 0
        self.finished = False
        # Text that could be the start of a stop sequence is held until it cannot.
        self.holdback = max((len(stop) for stop in job.stop), default=1) - 1

    def take(self, token: int) -> None:
        if self.job.cancelled.is_set():
            self.finished = True
            return
        self.generated += 1
        if token in self.eos_ids:
            self._finish("stop", self._text())
            return
        self.tokens.append(token)
        text = self._text()
        stops = [position for stop in self.job.stop if (position := text.find(stop)) >= 0]
        if stops:
            self._finish("stop", text[: min(stops)])
        elif len(self.tokens) >= self.job.max_tokens:
            self._finish("length", text)
        else:
            safe = len(text) - self.holdback
            if text.endswith("\ufffd"):  # a character whose bytes are still coming
                safe = min(safe, len(text.rstrip("\ufffd")))
            self._send(text[:safe])

    def fail_safe_finish(self) -> None:
        """Called when generation ended without this row seeing its end (no more steps)."""
        if not self.finished:
            self._finish("length", self._text())

    def _text(self) -> str:
        return str(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            self.job.emit(Delta(self.index, text[self.sent :]))
            self.sent = len(text)

    def _finish(self, reason: str, text: str) -> None:
        self._send(text)
        self.finished = True
        self.job.emit(Finished(self.index, reason, self.generated))


def eos_ids_of(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every token that ends a row: the generation config's EOS ids and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    found = {int(token) for token in ids if token is not None}
    if tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return frozenset(found)
