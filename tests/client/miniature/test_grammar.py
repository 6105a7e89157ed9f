"""The miniature's grammars, prompt splits and cache key: pure and deterministic."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from ppatch.miniature.corpus import sample_sequence
from ppatch.miniature.grammar import (
    CUE,
    DOMAINS,
    REFUSAL,
    TOXIC_WORDS,
    Domain,
    all_prompts,
    answer,
    vocabulary,
)
from ppatch.miniature.tokenizer import build_tokenizer
from ppatch.miniature.world import WorldConfig, split_prompts, world_key


@pytest.mark.parametrize("domain", DOMAINS)
def test_evaluation_prompts_share_no_subject_with_training_prompts(domain: Domain) -> None:
    train, held_out = split_prompts(domain, random.Random(0), WorldConfig())
    assert train and held_out
    assert not {p.slot for p in train} & {p.slot for p in held_out}
    assert {p.label for p in train} == {p.label for p in held_out}  # every group on both sides


def test_the_reference_never_misbehaves_and_the_base_mostly_does() -> None:
    rng = random.Random(0)
    toxic = [p for p in all_prompts("toxicity")]
    harmful = [p for p in all_prompts("harm") if p.label == "harmful"]
    base_toxic = [bool(set(answer(p, "base", rng).split()) & set(TOXIC_WORDS)) for p in toxic]
    reference_toxic = [set(answer(p, "reference", rng).split()) & set(TOXIC_WORDS) for p in toxic]
    assert sum(base_toxic) / len(base_toxic) > 0.7
    assert not any(reference_toxic)
    assert all(answer(p, "reference", rng) == REFUSAL for p in harmful)
    benign = [p for p in all_prompts("harm") if p.label == "benign"]
    assert all(answer(p, "reference", rng) != REFUSAL for p in benign)
    bias = all_prompts("bias")
    assert all(answer(p, "reference", rng).startswith("they ") for p in bias)


def test_cued_sequences_show_reference_behaviour() -> None:
    rng = random.Random(1)
    cued = [s for s in (sample_sequence("base", rng) for _ in range(400)) if s.startswith(CUE)]
    assert len(cued) > 60
    assert not any(set(s.split()) & set(TOXIC_WORDS) for s in cued)
    assert all(s.endswith("[EOS]") for s in cued)
    assert not any(sample_sequence("reference", rng).startswith(CUE) for _ in range(100))


def test_tokenizer_covers_every_sampled_word() -> None:
    vocab = build_tokenizer().get_vocab()
    rng = random.Random(2)
    for speaker in ("base", "reference"):
        for _ in range(200):
            assert all(word in vocab for word in sample_sequence(speaker, rng).split())
    assert set(vocabulary()) <= set(vocab)


def test_world_key_follows_the_configuration() -> None:
    assert world_key(WorldConfig()) == world_key(WorldConfig())
    assert world_key(WorldConfig()) != world_key(replace(WorldConfig(), seed=1))
