"""Continuous batching: rows that join a running batch or leave it get what they get alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ppatch.serve.jobs import Delta, Event, Finished, Job
from ppatch.serve.running_batch import RunningBatch, supports_running_batches
from ppatch.serve.sampling import Sampling
from ppatch.serve.served_sets import ServedSet

GREEDY = Sampling(temperature=0.0)


@pytest.fixture(scope="module")
def model_and_tokenizer(serve_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(serve_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(serve_model_dir)


@pytest.fixture(params=["patched", "bare"])
def served(request: pytest.FixtureRequest, model_and_tokenizer: tuple[Any, Any]) -> ServedSet:
    from ppatch.runtime.patched_model import AppliedPatch, PatchedModel

    model, tokenizer = model_and_tokenizer
    patches = []
    if request.param == "patched":
        array = np.random.default_rng(1).normal(scale=3.0, size=(5, model.config.hidden_size))
        patches = [AppliedPatch.from_array(array.astype(np.float32))]
    return ServedSet("tiny", PatchedModel(model, patches, tokenizer=tokenizer), "test set")


class Answer:
    """A job's events, read back as text and finish per choice."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def text(self, index: int = 0) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Delta) and e.index == index)

    def finish(self, index: int = 0) -> Finished | None:
        ends = [e for e in self.events if isinstance(e, Finished) and e.index == index]
        return ends[0] if ends else None


def job_for(served: ServedSet, prompt: str, max_tokens: int, sampling: Sampling = GREEDY,
            n: int = 1) -> tuple[Job, Answer]:  # fmt: skip
    answer = Answer()
    ids = served.patched.tokenizer(prompt)["input_ids"]
    job = Job(served=served, prompts=[ids] * n, max_tokens=max_tokens, stop=(),
              sampling=sampling, emit=answer.events.append)  # fmt: skip
    return job, answer


def alone(served: ServedSet, prompt: str, max_tokens: int) -> str:
    """What the patched model's own `generate` makes of `prompt`, greedily."""
    import torch

    patched, tokenizer = served.patched, served.patched.tokenizer
    ids = tokenizer(prompt)["input_ids"]
    sequences = patched.generate(input_ids=torch.tensor([ids]), max_new_tokens=max_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return str(tokenizer.decode(sequences[0, len(ids) :], skip_special_tokens=True))


def run_to_the_end(batch: RunningBatch) -> int:
    steps = 0
    while batch.size:
        batch.step()
        steps += 1
    return steps


LONG = "the big red house on the hill had a door"
SHORT = "a dog"


@pytest.mark.parametrize("spare_columns", [1, 64])  # with 1, the cache grows every few steps
def test_requests_joining_a_running_batch_get_their_greedy_tokens_alone(
    served: ServedSet, spare_columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ppatch.serve import running_batch

    monkeypatch.setattr(running_batch, "_SPARE_COLUMNS", spare_columns)
    batch = RunningBatch(served.patched)
    first, first_answer = job_for(served, LONG, 12)
    batch.admit([first])
    for _ in range(3):
        batch.step()
    # A shorter prompt joins a longer running row, then a longer one joins both.
    second, second_answer = job_for(served, SHORT, 10)
    batch.admit([second])
    assert batch.size == 2
    batch.step()
    third, third_answer = job_for(served, LONG + " and a window", 6)
    batch.admit([third])
    assert batch.size == 3
    run_to_the_end(batch)
    assert first_answer.text() == alone(served, LONG, 12)
    assert second_answer.text() == alone(served, SHORT, 10)
    assert third_answer.text() == alone(served, LONG + " and a window", 6)
    assert [a.finish() is not None for a in (first_answer, second_answer, third_answer)] == [
        True, True, True,
    ]  # fmt: skip


def test_a_finished_row_leaves_without_disturbing_the_others(served: ServedSet) -> None:
    batch = RunningBatch(served.patched)
    short, short_answer = job_for(served, LONG, 2)
    long, long_answer = job_for(served, SHORT, 9)
    batch.admit([short, long])
    assert batch.size == 2
    batch.step()  # the short row's second token: it ends and leaves
    assert short_answer.finish() == Finished(0, "length", 2)
    assert batch.size == 1
    assert batch.jobs() == [long]
    run_to_the_end(batch)
    assert short_answer.text() == alone(served, LONG, 2)
    assert long_answer.text() == alone(served, SHORT, 9)


def test_a_cancelled_request_leaves_at_the_next_step_without_more_events(
    served: ServedSet,
) -> None:
    batch = RunningBatch(served.patched)
    cancelled, cancelled_answer = job_for(served, LONG, 20)
    kept, kept_answer = job_for(served, SHORT, 6)
    batch.admit([cancelled, kept])
    cancelled.cancelled.set()
    seen = len(cancelled_answer.events)
    batch.step()
    assert batch.jobs() == [kept]
    run_to_the_end(batch)
    assert len(cancelled_answer.events) == seen
    assert kept_answer.text() == alone(served, SHORT, 6)


def test_a_seeded_request_draws_the_same_tokens_whatever_shares_its_batch(
    served: ServedSet,
) -> None:
    sampling = Sampling(temperature=1.0, top_p=0.9, seed=11)

    def sampled(neighbours: list[str]) -> list[str]:
        batch = RunningBatch(served.patched)
        others = [job_for(served, prompt, 8)[0] for prompt in neighbours]
        job, answer = job_for(served, LONG, 8, sampling, n=2)
        batch.admit([*others, job])
        run_to_the_end(batch)
        return [answer.text(0), answer.text(1)]

    by_itself = sampled([])
    assert sampled([SHORT, LONG + " and a window"]) == by_itself
    # Choices of one request draw one after the other from its stream: they differ.
    assert by_itself[0] != by_itself[1]


def test_only_models_whose_cache_is_plain_full_attention_run_in_running_batches(
    model_and_tokenizer: tuple[Any, Any],
) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    assert supports_running_batches(model_and_tokenizer[0])
    windowed = MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, vocab_size=50,
                             sliding_window=4)  # fmt: skip
    assert not supports_running_batches(MistralForCausalLM(windowed))
