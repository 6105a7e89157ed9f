"""Progress bars for long work: shown on a terminal, silent when output is piped.

One helper so every command behaves the same way: downloads, hashing, training and evaluation
report through `progress()`; scripts and CI logs see nothing unless they ask.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress", "progress_enabled"]

Advance = Callable[[float], None]


def progress_enabled() -> bool:
    """True when stderr is a terminal and the user did not turn bars off."""
    if os.environ.get("PPATCH_NO_PROGRESS"):
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
