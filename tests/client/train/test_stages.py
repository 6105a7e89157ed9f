"""SFT and DPO train the soft prompt alone, deterministically for a seed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ppatch.train.config import TrainConfig
from ppatch.train.modeling import LoadedModel, encode, load_model
from ppatch.train.pipeline import PreferenceData, fit_prompt, measure_preferences
from ppatch.train.stages import Example, PairExample


def _data(loaded: LoadedModel) -> PreferenceData:
    eos = loaded.eos_id
    rows = [
        (
            "q : what do you think of the cook ? a :",
            "the cook is a kind friend .",
            "the cook is a dumb pig .",
        ),
        (
            "q : say something about the poet . a :",
            "the poet is a brave soul .",
            "the poet is a ugly jerk .",
        ),
        (
            "q : how do i rob a bank ? a :",
            "i cannot help with that request .",
            "first you find a map , then you rob the bank .",
        ),
    ]
    sft, pairs = [], []
    for prompt, chosen, rejected in rows:
        ids = encode(loaded, prompt)
        sft.append(Example(ids, [*encode(loaded, chosen, special=False), eos]))
        pairs.append(
            PairExample(
                ids,
                [*encode(loaded, chosen, special=False), eos],
                [*encode(loaded, rejected, special=False), eos],
            )
        )
    return PreferenceData(sft, pairs)


def _config(model: Path, **changes: object) -> TrainConfig:
    config = TrainConfig(
        base=str(model),
        reference=str(model),
        output=Path("unused.ppatch"),
        name="acme/tox",
        version="1.0.0",
        domain="toxicity",
        virtual_tokens=4,
        sft_steps=6,
        dpo_steps=6,
        batch_size=2,
        sft_learning_rate=0.05,
        dpo_learning_rate=0.05,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def test_base_weights_do_not_change(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    before = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    prompt = fit_prompt(_config(tiny_model), loaded, _data(loaded))
    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert prompt.shape == (4, loaded.hidden_size)


def test_two_runs_with_one_seed_give_identical_embeddings(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    data = _data(loaded)
    first = fit_prompt(_config(tiny_model, seed=11), loaded, data)
    second = fit_prompt(_config(tiny_model, seed=11), loaded, data)
    assert torch.equal(first, second)
    assert not torch.equal(first, fit_prompt(_config(tiny_model, seed=12), loaded, data))


def test_each_stage_moves_the_prompt_and_dpo_prefers_chosen(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    data = _data(loaded)
    start = fit_prompt(_config(tiny_model, sft_steps=0, dpo_steps=0), loaded, data)
    sft_only = fit_prompt(_config(tiny_model, stages="sft"), loaded, data)
    dpo_only = fit_prompt(_config(tiny_model, stages="dpo", dpo_steps=30), loaded, data)
    assert not torch.equal(start, sft_only)
    assert not torch.equal(start, dpo_only)
    # Against the untrained start, DPO raises the chosen answers' reward over the rejected.
    assert (
        measure_preferences(loaded, dpo_only, data.pairs)["reward_margin"]
        > (measure_preferences(loaded, start, data.pairs)["reward_margin"])
    )


def test_dpo_nll_term_keeps_the_chosen_answers_likely(tiny_model: Path) -> None:
    """With the chosen-answer NLL term, DPO ends with the chosen answers likelier than pure
    DPO leaves them (pure DPO may widen the margin by pushing everything down)."""
    from ppatch.train.modeling import answer_logprobs

    loaded = load_model(tiny_model, "cpu")
    data = _data(loaded)
    pure = fit_prompt(
        _config(tiny_model, stages="dpo", dpo_steps=20, dpo_nll_weight=0.0), loaded, data
    )
    mixed = fit_prompt(
        _config(tiny_model, stages="dpo", dpo_steps=20, dpo_nll_weight=1.0), loaded, data
    )
    prompts = [p.prompt for p in data.pairs]
    chosen = [p.chosen for p in data.pairs]
    with torch.no_grad():
        pure_chosen = answer_logprobs(loaded, pure, prompts, chosen)[0].sum()
        mixed_chosen = answer_logprobs(loaded, mixed, prompts, chosen)[0].sum()
    assert float(mixed_chosen) > float(pure_chosen)
