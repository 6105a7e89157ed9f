"""The batching engine: one thread runs the model; concurrent requests share running batches.

Batching is per decoding step (continuous batching): the scheduler thread keeps one running
batch per served patch set (`ppatch.serve.running_batch`). Between two steps it takes every
request that has arrived, admits it into its set's batch while the batch has room
(`max_batch_rows`), and then advances every batch by one token. A request that arrives while
others are decoding starts at the next step instead of waiting for them to finish, and a row
that ends leaves the batch at once. Rows of different patch sets never share a batch, so a
request finishes on the set it started with, even across a hot swap. Sampling parameters and
seeds are per row, so they do not split batches.

When the engine is idle, the first request waits `window_seconds` for others to arrive with it,
so that a burst is prefilled in one forward pass.

Models whose cache cannot be joined row by row (sliding-window or other special layers) run one
request at a time through `PatchedModel.generate` (`run_batch`), with the same row bookkeeping.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ppatch.serve.jobs import Delta, Event, Failed, Finished, Job, Row, eos_ids_of
from ppatch.serve.running_batch import RunningBatch, supports_running_batches
from ppatch.serve.sampling import Sampling

if TYPE_CHECKING:
    import torch

__all__ = [
    "BatchingEngine",
    "Delta",
    "Event",
    "Failed",
    "Finished",
    "Job",
    "RowTracker",
    "Sampling",
    "run_batch",
]

log = logging.getLogger("ppatch.serve")


class BatchingEngine:
    """Runs jobs on one scheduler thread, in one running batch per served patch set."""

    def __init__(
        self,
        *,
        window_seconds: float = 0.005,
        max_batch_rows: int = 32,
        on_batch: Callable[[int], None] = lambda rows: None,
        on_tokens: Callable[[int], None] = lambda tokens: None,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_batch_rows = max_batch_rows
        self._on_batch = on_batch
        self._on_tokens = on_tokens
        self._queue: queue.Queue[Job] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[Job] = []
        self._batches: dict[int, RunningBatch] = {}
        self._continuous: dict[int, bool] = {}  # id(model) -> supports_running_batches

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
        import torch

        with torch.inference_mode():
            while not self._stopping.is_set():
                if not self._batches and not self._pending:
                    try:
                        first = self._queue.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    self._pending.append(first)
                    self._wait_for_company()
                self._take_arrivals()
                self._admit_pending()
                for key, batch in list(self._batches.items()):
                    self._guarded(batch, batch.step)
                    if not batch.size:
                        del self._batches[key]
        for job in self._pending + [j for b in self._batches.values() for j in b.jobs()]:
            job.emit(Failed("the server is shutting down"))

    def _wait_for_company(self) -> None:
        """Collect what arrives within the window after a request finds the engine idle."""
        deadline = time.monotonic() + self.window_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._pending.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                return

    def _take_arrivals(self) -> None:
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _admit_pending(self) -> None:
        """Admit waiting jobs, oldest first, into their set's batch while it has room."""
        admitted: dict[int, list[Job]] = {}
        waiting: list[Job] = []
        for job in self._pending:
            if job.cancelled.is_set():
                continue
            patched = job.served.patched
            if not self._runs_continuously(patched.model):
                run_batch([job], on_tokens=self._on_tokens)
                continue
            key = job.batch_key()
            batch = self._batches.get(key)
            joining = admitted.get(key, [])
            rows = (batch.size if batch else 0) + sum(len(j.prompts) for j in joining)
            if rows and rows + len(job.prompts) > self.max_batch_rows:
                waiting.append(job)
                continue
            admitted.setdefault(key, []).append(job)
            if batch is None:
                self._batches[key] = RunningBatch(patched)
        self._pending = waiting
        for key, jobs in admitted.items():
            batch = self._batches[key]
            if self._guarded(batch, partial(batch.admit, jobs), newcomers=jobs):
                self._on_batch(batch.size)
            if not batch.size:
                del self._batches[key]

    def _runs_continuously(self, model: Any) -> bool:
        known = self._continuous.get(id(model))
        if known is None:
            known = self._continuous[id(model)] = supports_running_batches(model)
        return known

    def _guarded(
        self, batch: RunningBatch, work: Callable[[], int], newcomers: Sequence[Job] = ()
    ) -> bool:
        """Run `work` on `batch`; a failure ends that batch's jobs, never the server."""
        try:
            self._on_tokens(work())
            return True
        except Exception as error:
            log.exception("generation failed")
            message = " ".join(str(error).split()) or type(error).__name__
            failed = f"generation failed: {message}"
            running = {id(job) for job in batch.jobs()}
            batch.fail(failed)
            for job in newcomers:
                if id(job) not in running:
                    job.emit(Failed(failed))
            return False


class RowTracker:
    """A `StoppingCriteria` (per-row booleans) that also streams each row's new text."""

    def __init__(self, rows: Sequence[Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            if not row.finished:
                row.take(int(token))
        return torch.tensor([row.finished for row in self.rows], device=input_ids.device)


def run_batch(jobs: Sequence[Job], on_tokens: Callable[[int], None] = lambda tokens: None) -> None:
    """Generate every row of `jobs` (one patch set, one sampling) as one `generate` call."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    patched = jobs[0].served.patched
    tokenizer = patched.tokenizer
    eos_ids = eos_ids_of(patched.model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    choices = [(job, index) for job in jobs for index in range(len(job.prompts))]
    rows = [Row(job, index, tokenizer, eos_ids) for job, index in choices]
    prompts = [list(job.prompts[index]) for job, index in choices]
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
    try:
        patched.generate(
            input_ids=input_ids.to(patched.device),
            attention_mask=mask.to(patched.device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([RowTracker(rows)]),
        )
    except Exception as error:  # one failed request must not stop the server
        log.exception("generation failed")
        message = " ".join(str(error).split()) or type(error).__name__
        for job in jobs:
            job.emit(Failed(f"generation failed: {message}"))
        return
    for row in rows:
        row.fail_safe_finish()
    on_tokens(sum(row.generated for row in rows))
