"""Progress bars for long work: shown on a terminal, silent when output is piped.

One helper so every command behaves the same way: downloads, hashing, training and evaluation
report through `progress()`; scripts and CI logs see nothing unless they ask.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["deferred_progress", "progress", "progress_enabled"]

Advance = Callable[[float], None]


def progress_enabled() -> bool:
    """True when stderr is a terminal and the user did not turn bars off."""
    from ppatch import verbosity

    if os.environ.get("PPATCH_NO_PROGRESS") or verbosity.level() < 0:
        return False
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, total: float | None, *, unit: str = "") -> Iterator[Advance]:
    """Yield a function that advances the bar by an amount; a no-op when bars are off.

    `unit="bytes"` shows transfer size and speed; anything else shows a count.
    """
    if not progress_enabled():
        yield lambda _amount: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda amount: bar.advance(task, amount)


@contextmanager
def deferred_progress(
    description: str, total: float | None, *, unit: str = ""
) -> Iterator[Advance]:
    """`progress`, but the bar appears at the first advance: for work that is usually skipped.

    Fingerprinting a model is the case: its fingerprint is nearly always cached, and importing
    rich for a bar that never moves would cost a cron job's `ppatch outdated` a large part of
    its start-up budget (docs/cli.md). The returned function may be called from several
    threads, as the fingerprint's workers do.
    """
    if not progress_enabled():
        yield lambda _amount: None
        return
    with ExitStack() as stack:
        started: list[Advance] = []
        lock = threading.Lock()

        def advance(amount: float) -> None:
            if not started:
                with lock:
                    if not started:
                        started.append(stack.enter_context(progress(description, total, unit=unit)))
            started[0](amount)

        yield advance
