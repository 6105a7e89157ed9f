"""The engine's per-row bookkeeping: what is streamed, when a row ends, and why."""

from __future__ import annotations

from typing import Any

import pytest

from ppatch.serve.engine import Delta, Event, Finished, Job, RowTracker, Sampling, _Row


class LetterTokenizer:
    """Token i decodes to the i-th character of `alphabet`; 0 is EOS."""

    alphabet = "\x00abcdefgh XYZ"

    def decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.alphabet[token] for token in tokens)


def run_row(tokens: list[int], *, stop: tuple[str, ...] = (), max_tokens: int = 50) -> list[Event]:
    events: list[Event] = []
    job = Job(served=None, prompts=[[1]], max_tokens=max_tokens, stop=stop,  # type: ignore[arg-type]
              sampling=Sampling(), emit=events.append)  # fmt: skip
    row = _Row(job, 0, LetterTokenizer(), frozenset({0}))
    for token in tokens:
        if row.finished:
            break
        row.take(token)
    row.fail_safe_finish()
    return events


def streamed(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


def finish(events: list[Event]) -> Finished:
    ends = [event for event in events if isinstance(event, Finished)]
    assert len(ends) == 1 and events[-1] is ends[0]
    return ends[0]


def test_text_before_a_stop_sequence_is_sent_and_the_stop_sequence_never() -> None:
    # "abc XY" + "Z": the stop sequence "XYZ" spans three tokens.
    events = run_row([1, 2, 3, 9, 10, 11, 12, 4], stop=("XYZ",))
    assert streamed(events) == "abc "
    assert all("X" not in event.text for event in events if isinstance(event, Delta))
    assert finish(events).reason == "stop"
    assert finish(events).completion_tokens == 7


def test_a_held_back_prefix_that_is_no_stop_is_sent_later() -> None:
    events = run_row([1, 10, 2, 0], stop=("XYZ",))
    assert streamed(events) == "aXb"
    assert finish(events) == Finished(0, "stop", 4)  # EOS counts as generated


def test_max_tokens_ends_a_row_with_length() -> None:
    events = run_row([1, 2, 3, 4, 5], max_tokens=3)
    assert streamed(events) == "abc"
    assert finish(events) == Finished(0, "length", 3)


def test_a_cancelled_job_ends_its_rows_without_events() -> None:
    events: list[Event] = []
    job = Job(served=None, prompts=[[1], [1]], max_tokens=5, stop=(),  # type: ignore[arg-type]
              sampling=Sampling(), emit=events.append)  # fmt: skip
    rows = [_Row(job, index, LetterTokenizer(), frozenset({0})) for index in range(2)]
    tracker = RowTracker(rows)
    torch = pytest.importorskip("torch")
    assert tracker(torch.tensor([[1, 2], [1, 3]]), None).tolist() == [False, False]
    job.cancelled.set()
    assert tracker(torch.tensor([[1, 2, 4], [1, 3, 4]]), None).tolist() == [True, True]
    assert streamed(events) == "bc"


@pytest.mark.parametrize(
    ("a", "b", "together"),
    [
        (Sampling(0.0, 1.0), Sampling(0.0, 1.0), True),
        (Sampling(0.7, 0.9), Sampling(0.7, 0.9), True),
        (Sampling(0.7, 0.9), Sampling(0.7, 1.0), False),
        (Sampling(0.7, 1.0, seed=3), Sampling(0.7, 1.0, seed=3), False),
    ],
)
def test_jobs_share_a_batch_only_with_the_same_set_and_sampling(
    a: Sampling, b: Sampling, together: bool
) -> None:
    served: Any = type("Served", (), {"patched": object()})()
    jobs = [Job(served=served, prompts=[[1]], max_tokens=1, stop=(), sampling=sampling,
                emit=lambda event: None) for sampling in (a, b)]  # fmt: skip
    assert (jobs[0].group_key() == jobs[1].group_key()) is together
