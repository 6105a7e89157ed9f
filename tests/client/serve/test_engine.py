"""The engine's per-row bookkeeping: what is streamed, when a row ends, and why."""

from __future__ import annotations

from typing import Any

import pytest

from ppatch.serve.engine import RowTracker
from ppatch.serve.jobs import Delta, Event, Finished, Job, Row
from ppatch.serve.sampling import Sampling


class LetterTokenizer:
    """Token i decodes to the i-th character of `alphabet`; 0 is EOS."""

    alphabet = "\x00abcdefgh XYZ"

    def decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.alphabet[token] for token in tokens)


def run_row(tokens: list[int], *, stop: tuple[str, ...] = (), max_tokens: int = 50) -> list[Event]:
    events: list[Event] = []
    job = Job(served=None, prompts=[[1]], max_tokens=max_tokens, stop=stop,  # type: ignore[arg-type]
              sampling=Sampling(), emit=events.append)  # fmt: skip
    row = Row(job, 0, LetterTokenizer(), frozenset({0}))
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
    rows = [Row(job, index, LetterTokenizer(), frozenset({0})) for index in range(2)]
    tracker = RowTracker(rows)
    torch = pytest.importorskip("torch")
    assert tracker(torch.tensor([[1, 2], [1, 3]]), None).tolist() == [False, False]
    job.cancelled.set()
    assert tracker(torch.tensor([[1, 2, 4], [1, 3, 4]]), None).tolist() == [True, True]
    assert streamed(events) == "bc"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Sampling(0.0, 1.0), Sampling(0.0, 1.0)),
        (Sampling(0.7, 0.9), Sampling(0.0, 1.0)),
        (Sampling(0.7, 0.9, seed=3), Sampling(0.7, 1.0, seed=4)),
    ],
)
def test_jobs_share_a_batch_whatever_their_sampling_but_only_with_the_same_set(
    a: Sampling, b: Sampling
) -> None:
    sets: list[Any] = [type("Served", (), {"patched": object()})() for _ in range(2)]
    same = [Job(served=sets[0], prompts=[[1]], max_tokens=1, stop=(), sampling=sampling,
                emit=lambda event: None) for sampling in (a, b)]  # fmt: skip
    other = Job(served=sets[1], prompts=[[1]], max_tokens=1, stop=(), sampling=a,
                emit=lambda event: None)  # fmt: skip
    assert same[0].batch_key() == same[1].batch_key()
    assert other.batch_key() != same[0].batch_key()


def test_a_model_whose_cache_cannot_be_joined_row_by_row_is_served_through_generate(
    start_server: Any, serve_model_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ppatch.serve import engine
    from tests.client.serve.test_openai_client import library_completion

    monkeypatch.setattr(engine, "supports_running_batches", lambda model: False)
    monkeypatch.setattr(engine.RunningBatch, "admit", None)  # never used for such a model
    live = start_server()
    client = live.openai()
    tokenizer = live.server.state.tokenizer
    prompts = ["the cat sat on", "a dog ran to the"]

    def ask(prompt: str) -> str:
        answer = client.completions.create(
            model=serve_model_dir.name, prompt=prompt, max_tokens=5, temperature=0
        )
        return str(answer.choices[0].text)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(ask, prompts))
    expected = [library_completion(serve_model_dir, tokenizer(p)["input_ids"], 5) for p in prompts]
    assert answers == expected
    assert live.metric("ppatch_serve_generated_tokens_total") >= 2
