"""Initial soft prompts follow PEFT's semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppatch.errors import UsageError
from ppatch.train.modeling import load_model
from ppatch.train.soft_prompt import init_token_ids, initial_prompt


@pytest.mark.parametrize(
    ("ids", "length", "expected"),
    [
        ([1, 2, 3], 7, [1, 2, 3, 1, 2, 3, 1]),  # repeated, then cut
        ([1, 2, 3, 4, 5], 3, [1, 2, 3]),  # cut
        ([9], 4, [9, 9, 9, 9]),
        ([4, 5], 2, [4, 5]),
    ],
)
def test_text_init_repeats_or_cuts_to_length(
    ids: list[int], length: int, expected: list[int]
) -> None:
    assert init_token_ids(ids, length) == expected


@pytest.mark.parametrize(("ids", "length"), [([], 5), ([1], 0)])
def test_text_init_rejects_empty_text_and_no_tokens(ids: list[int], length: int) -> None:
    with pytest.raises(UsageError):
        init_token_ids(ids, length)


def test_text_init_equals_peft_prompt_embedding(tiny_model: Path) -> None:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType
    from peft.tuners.prompt_tuning.model import PromptEmbedding

    loaded = load_model(tiny_model, "cpu")
    text = "note : be kind and fair and safe ."
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=text,
        tokenizer_name_or_path=str(tiny_model),
        num_virtual_tokens=20,
        token_dim=loaded.hidden_size,
        num_transformer_submodules=1,
    )
    peft_rows = PromptEmbedding(config, loaded.model.get_input_embeddings()).embedding.weight
    ours = initial_prompt(loaded, 20, text, seed=0)
    assert torch.equal(ours, peft_rows.detach())


def test_vocabulary_init_draws_token_rows_by_seed(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    first = initial_prompt(loaded, 6, None, seed=3)
    assert torch.equal(first, initial_prompt(loaded, 6, None, seed=3))
    assert not torch.equal(first, initial_prompt(loaded, 6, None, seed=4))
    table = loaded.model.get_input_embeddings().weight
    for row in first:  # every row is some token's embedding
        assert bool((table == row).all(dim=1).any())
