"""Scoring and sampling with a soft prompt in front of a frozen model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppatch.errors import NotFoundError, UsageError
from ppatch.train.modeling import (
    answer_logprobs,
    check_same_vocabulary,
    encode,
    generate,
    load_model,
)


def test_answer_logprobs_score_answer_tokens_only(tiny_model: Path) -> None:
    """Equal to scoring the answer tokens by hand after the prefix; prompt tokens add nothing."""
    loaded = load_model(tiny_model, "cpu")
    prefix = torch.randn(5, loaded.hidden_size, generator=torch.Generator().manual_seed(0))
    prompts = [encode(loaded, "q : how do i fix a car ? a :"), encode(loaded, "the cat sat")]
    answers = [
        encode(loaded, "first you find a map .", special=False),
        encode(loaded, "on the mat .", special=False),
    ]
    total, counts = answer_logprobs(loaded, prefix, prompts, answers)
    assert counts.tolist() == [len(a) for a in answers]
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ids = torch.tensor([prompt + answer])
        embeds = torch.cat([prefix[None], loaded.model.get_input_embeddings()(ids)], dim=1)
        logprobs = torch.log_softmax(loaded.model(inputs_embeds=embeds).logits[0], dim=-1)
        start = prefix.shape[0] + len(prompt)
        expected = sum(float(logprobs[start + i - 1, token]) for i, token in enumerate(answer))
        assert float(total[row]) == pytest.approx(expected, abs=1e-4)


def test_answer_logprobs_without_prefix(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    prompt = encode(loaded, "the dog", special=False)
    answer = encode(loaded, "ran .", special=False)
    total, _ = answer_logprobs(loaded, None, [prompt], [answer])
    logprobs = torch.log_softmax(
        loaded.model(input_ids=torch.tensor([prompt + answer])).logits[0], -1
    )
    expected = float(logprobs[1, answer[0]] + logprobs[2, answer[1]])
    assert float(total[0]) == pytest.approx(expected, abs=1e-4)


def test_generation_is_deterministic_for_a_seed(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    prompts = [encode(loaded, "q : say something about the cook . a :"), encode(loaded, "the cat")]
    prefix = torch.zeros(3, loaded.hidden_size)
    kwargs = {"samples": 3, "max_new_tokens": 6, "temperature": 1.0}
    first = generate(loaded, prefix, prompts, seed=7, **kwargs)
    assert first == generate(loaded, prefix, prompts, seed=7, **kwargs)
    assert first != generate(loaded, prefix, prompts, seed=8, **kwargs)
    assert [len(per_prompt) for per_prompt in first] == [3, 3]
    assert all(len(answer) <= 6 for per_prompt in first for answer in per_prompt)


def test_models_with_different_tokenizers_are_refused(
    tiny_model: Path, other_tokenizer_model: Path
) -> None:
    with pytest.raises(UsageError, match="different tokenizers"):
        check_same_vocabulary(
            load_model(tiny_model, "cpu"), load_model(other_tokenizer_model, "cpu")
        )


def test_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no config\.json"):
        load_model(tmp_path / "empty")
