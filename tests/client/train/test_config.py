"""Step settings by model size: the miniature's below 20M parameters, the real model's from it."""

from __future__ import annotations

from pathlib import Path

from ppatch.train.config import StepSettings, TrainConfig, step_settings_for


def _config(**settings: object) -> TrainConfig:
    return TrainConfig(base="m", reference=None, output=Path("o.ppatch"), name="a/b",
                       version="1.0.0", domain="harm", **settings)  # type: ignore[arg-type]  # fmt: skip


def test_defaults_follow_the_model_size() -> None:
    assert step_settings_for(19_999_999) == StepSettings(150, 0.03, 60, 0.003, 16)
    assert step_settings_for(20_000_000) == StepSettings(40, 0.05, 20, 0.005, 8)
    assert step_settings_for(70_000_000_000) == StepSettings(40, 0.05, 20, 0.005, 8)


def test_given_settings_win_over_the_size_defaults() -> None:
    config = _config(sft_steps=5, dpo_learning_rate=0.5)
    assert config.steps_for(135_000_000) == StepSettings(5, 0.05, 20, 0.5, 8)
    assert config.steps_for(1_000) == StepSettings(5, 0.03, 60, 0.5, 16)


def test_sized_for_records_every_value_used() -> None:
    recorded = _config(batch_size=4).sized_for(135_000_000).hyperparameters()
    keys = ("sft_steps", "sft_learning_rate", "dpo_steps", "dpo_learning_rate", "batch_size")
    assert [recorded[key] for key in keys] == [40, 0.05, 20, 0.005, 4]
