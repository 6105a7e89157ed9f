"""Progress bars: off when piped; a deferred bar opens only when the work actually advances."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ppatch import progress as progress_module
from ppatch.progress import deferred_progress, progress_enabled


class Bars:
    """Stands in for the rich bar: records how many were opened and what they were advanced."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, float | None, str]] = []
        self.closed = 0
        self.advanced: list[float] = []

    @contextmanager
    def __call__(
        self, description: str, total: float | None, *, unit: str = ""
    ) -> Iterator[Callable[[float], None]]:
        self.opened.append((description, total, unit))
        try:
            yield self.advanced.append
        finally:
            self.closed += 1


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Bars:
    recorder = Bars()
    monkeypatch.setattr(progress_module, "progress", recorder)
    monkeypatch.setattr(progress_module, "progress_enabled", lambda: True)
    return recorder


def test_bars_are_off_when_stderr_is_not_a_terminal() -> None:
    # pytest captures stderr, so it is not a terminal here.
    assert progress_enabled() is False


def test_a_deferred_bar_that_never_advances_is_never_opened(bars: Bars) -> None:
    with deferred_progress("fingerprinting m", None, unit="bytes"):
        pass
    assert bars.opened == []


def test_a_deferred_bar_opens_once_at_the_first_advance_even_from_threads(bars: Bars) -> None:
    with deferred_progress("fingerprinting m", 80, unit="bytes") as advance:
        workers = [threading.Thread(target=advance, args=(10,)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert bars.closed == 0
    assert bars.opened == [("fingerprinting m", 80, "bytes")]
    assert bars.advanced == [10] * 8
    assert bars.closed == 1


def test_a_deferred_bar_when_bars_are_off_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Bars()
    monkeypatch.setattr(progress_module, "progress", recorder)
    with deferred_progress("fingerprinting m", None) as advance:
        advance(5)
    assert recorder.opened == []
