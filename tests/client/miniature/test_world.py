"""Building the world: cached by configuration, never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ppatch.miniature.world as world_module
from ppatch.miniature.lm import ModelShape
from ppatch.miniature.world import WorldConfig, build_world

TINY = WorldConfig(
    shape=ModelShape(16, 1, 2, 32, 128), base_steps=3, reference_steps=2, fluency_texts=3
)


def test_build_writes_models_and_prompt_files_then_reuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world(tmp_path, TINY)
    for model in (world.base, world.reference):
        assert (model / "config.json").is_file()
        assert (model / "tokenizer.json").is_file()
    for domain in ("toxicity", "bias", "harm"):
        for split in ("train", "eval"):
            lines = world.prompts(domain, split).read_text().splitlines()
            assert lines and all("prompt" in json.loads(line) for line in lines)
    assert len(world.fluency_prompts.read_text().splitlines()) == 3

    def no_training(*_args: object) -> None:
        raise AssertionError("a cached world was trained again")

    monkeypatch.setattr(world_module, "_train_models", no_training)
    assert build_world(tmp_path, TINY) == world


def test_a_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(world_module, "_train_models", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_world(tmp_path, TINY)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
