"""The batching engine: one thread runs the model; concurrent requests share its batches.

Requests queue up; the scheduler thread takes what has arrived, waits a few milliseconds for
more (`window_seconds`), groups the rows by patch set and sampling parameters, and runs each
group as one left-padded batch through `PatchedModel.generate`, so every row of a group starts
from the same shared prefix cache. `RowTracker`, a stopping criterion, sees each new token of
every row: it decodes the row's text, emits what is safe to send (holding back what could still
become a stop sequence or an incomplete UTF-8 character), and ends rows on EOS, a stop
sequence, their own `max_tokens`, or a cancelled request, while the rest of the batch goes on.

A request with a `seed` runs in a batch of its own, so the same seed gives the same text
whatever else the server is doing.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ppatch.serve.served_sets import ServedSet

__all__ = [
    "BatchingEngine",
    "Delta",
    "Event",
    "Failed",
    "Finished",
    "Job",
    "Sampling",
]

log = logging.getLogger("ppatch.serve")


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen: greedy when `temperature` is 0."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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

    def group_key(self) -> tuple[Any, ...]:
        # A seeded job is its own group: batch neighbours would change what its seed draws.
        alone = self.number if self.sampling.seed is not None else None
        return (id(self.served.patched), self.sampling.temperature, self.sampling.top_p, alone)


class _Row:
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


class RowTracker:
    """A `StoppingCriteria` (per-row booleans) that also streams each row's new text."""

    def __init__(self, rows: Sequence[_Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            if not row.finished:
                row.take(int(token))
        return torch.tensor([row.finished for row in self.rows], device=input_ids.device)


class BatchingEngine:
    """Runs jobs on one scheduler thread, batching those that arrive together."""

    def __init__(
        self,
        *,
        window_seconds: float = 0.005,
        max_batch_rows: int = 32,
        on_batch: Callable[[int, int], None] = lambda rows, tokens: None,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_batch_rows = max_batch_rows
        self._on_batch = on_batch
        self._queue: queue.Queue[Job] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ppatch-serve-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        while not self._queue.empty():
            self._queue.get_nowait().emit(Failed("the server is shutting down"))

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            for group in self._groups(self._collect(first)):
                self._generate(group)

    def _collect(self, first: Job) -> list[Job]:
        """`first` and whatever arrives within the window, up to the batch's row limit."""
        jobs, rows = [first], len(first.prompts)
        deadline = time.monotonic() + self.window_seconds
        while rows < self.max_batch_rows:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._queue.get(timeout=max(remaining, 0.0))
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            jobs.append(job)
            rows += len(job.prompts)
        return [job for job in jobs if not job.cancelled.is_set()]

    def _groups(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """Jobs that can share a batch, each group at most `max_batch_rows` rows when it can."""
        by_key: dict[tuple[Any, ...], list[list[Job]]] = {}
        for job in jobs:
            chunks = by_key.setdefault(job.group_key(), [[]])
            if chunks[-1] and sum(len(j.prompts) for j in chunks[-1]) + len(job.prompts) > (
                self.max_batch_rows
            ):
                chunks.append([])
            chunks[-1].append(job)
        return [chunk for chunks in by_key.values() for chunk in chunks]

    def _generate(self, jobs: Sequence[Job]) -> None:
        try:
            generated = run_batch(jobs)
        except Exception as error:  # one failed batch must not stop the server
            log.exception("generation failed")
            message = " ".join(str(error).split()) or type(error).__name__
            for job in jobs:
                job.emit(Failed(f"generation failed: {message}"))
            return
        self._on_batch(sum(len(job.prompts) for job in jobs), generated)


def run_batch(jobs: Sequence[Job]) -> int:
    """Generate every row of `jobs` (one patch set, one sampling) as one batch; tokens made."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    patched = jobs[0].served.patched
    tokenizer = patched.tokenizer
    eos_ids = _eos_ids(patched, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    rows = [
        _Row(job, index, tokenizer, eos_ids) for job in jobs for index in range(len(job.prompts))
    ]
    prompts = [list(job.prompts[index]) for job in jobs for index in range(len(job.prompts))]
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    sampling = jobs[0].sampling
    options: dict[str, Any] = {"do_sample": not sampling.greedy}
    if not sampling.greedy:
        options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max(job.max_tokens for job in jobs),
        pad_token_id=pad,
        eos_token_id=sorted(eos_ids),
        **options,
    )
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    tracker = RowTracker(rows)
    with torch.inference_mode():
        patched.generate(
            input_ids=input_ids.to(patched.device),
            attention_mask=mask.to(patched.device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([tracker]),
        )
    for row in rows:
        row.fail_safe_finish()
    return sum(row.generated for row in rows)


def _eos_ids(patched: Any, tokenizer: Any) -> frozenset[int]:
    configured = patched.model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    found = {int(token) for token in ids if token is not None}
    if tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return frozenset(found)
