"""Every setting of a training run, with defaults and where each default comes from.

The paper (arXiv 2511.08484) trains a 50-token prefix with SFT on the reference model's answers
and then DPO with the reference answer preferred over the base model's. The step counts and
learning rates below are the miniature's (docs/training.md): a soft prompt on a tiny model wants
a high learning rate, and the values were chosen by measuring decision rates, not loss. On a
real 7B model, start from the paper's setup and lower the learning rates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from ppatch.errors import UsageError

__all__ = [
    "COMPUTE_DTYPES",
    "MINIATURE_STEPS",
    "REAL_MODEL_STEPS",
    "REFERENCE_KINDS",
    "RULE_REFUSAL",
    "SAFETY_SYSTEM_PROMPT",
    "SMALL_MODEL_PARAMETERS",
    "STAGES",
    "Stages",
    "StepSettings",
    "TrainConfig",
    "check_compute_dtype",
    "step_settings_for",
]

Stages = Literal["sft+dpo", "sft", "dpo"]
STAGES: tuple[Stages, ...] = ("sft+dpo", "sft", "dpo")

# `--reference` takes a model, or one of these words (docs/training.md, "The reference"):
# "system-prompt" is the base model with SAFETY_SYSTEM_PROMPT as its system message (context
# distillation); "rules" prefers a fixed refusal for `kind: harmful` prompts and the base
# model's own answer for `kind: benign` ones.
REFERENCE_KINDS = ("system-prompt", "rules")
SAFETY_SYSTEM_PROMPT = (
    "You are a helpful and harmless assistant. Refuse requests that could cause harm: "
    "violence, weapons, crime, self-harm, harassment, hate, or dangerous misinformation. "
    "Answer every other request helpfully. Never use insults, slurs or profanity."
)
RULE_REFUSAL = "I'm sorry, but I can't help with that request."
# `--dtype` of `ppatch train` and `ppatch eval`: the dtype the frozen model computes in. The
# soft prompt, its gradients and the optimizer state stay float32 whatever it is.
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")


# Models below this many parameters are the miniature's kind (and run on one CPU thread, in
# float32: ppatch.train.modeling); from it up, the settings measured on a real model apply.
SMALL_MODEL_PARAMETERS = 20_000_000


@dataclass(frozen=True)
class StepSettings:
    """How long and how fast the soft prompt trains."""

    sft_steps: int
    sft_learning_rate: float
    dpo_steps: int
    dpo_learning_rate: float
    batch_size: int


# The miniature's (docs/training.md): measured by decision rates on the tiny world's models.
MINIATURE_STEPS = StepSettings(
    sft_steps=150, sft_learning_rate=0.03, dpo_steps=60, dpo_learning_rate=0.003, batch_size=16
)
# Measured on SmolLM2-135M-Instruct on the validation split of benchmarks/real_model.py
# (docs/training.md, "Settings for real models"): the defaults from SMALL_MODEL_PARAMETERS up.
REAL_MODEL_STEPS = StepSettings(
    sft_steps=40, sft_learning_rate=0.05, dpo_steps=20, dpo_learning_rate=0.005, batch_size=8
)


def check_compute_dtype(name: str) -> None:
    """Refuse a `--dtype` of `ppatch train` or `ppatch eval` that is not one of COMPUTE_DTYPES."""
    if name not in COMPUTE_DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")


def step_settings_for(parameters: int) -> StepSettings:
    """The default step settings for a model of `parameters` parameters."""
    return MINIATURE_STEPS if parameters < SMALL_MODEL_PARAMETERS else REAL_MODEL_STEPS


@dataclass(frozen=True)
class TrainConfig:
    base: str
    reference: str | None
    output: Path
    name: str
    version: str
    domain: str
    prompts: Path | None = None
    pairs: Path | None = None
    key: Path | None = None
    summary: str = ""
    license: str = "Apache-2.0"
    # The paper's prefix length.
    virtual_tokens: int = 50
    # PEFT's TEXT initialisation when given; otherwise PEFT's SAMPLE_VOCAB (embeddings of
    # tokens drawn at random with the seed).
    init_text: str | None = None
    # The paper's two stages; "sft" and "dpo" alone are its ablation.
    stages: Stages = "sft+dpo"
    # Steps, learning rates and batch size: None takes them from the model's size
    # (`step_settings_for`, MINIATURE_STEPS or REAL_MODEL_STEPS), once the model is loaded.
    sft_steps: int | None = None
    sft_learning_rate: float | None = None
    dpo_steps: int | None = None
    dpo_learning_rate: float | None = None
    # DPO's usual beta (Rafailov et al. 2023; TRL's default).
    beta: float = 0.1
    # Weight of the chosen answers' NLL added to the DPO loss (0: the paper's pure sigmoid DPO).
    dpo_nll_weight: float = 1.0
    batch_size: int | None = None
    # Answers sampled per prompt from each model (k in the paper's data generation).
    samples_per_prompt: int = 4
    # ppatch's addition to the paper's data: this many texts sampled from the reference with no
    # prompt (beginning-of-text only) join the SFT examples, so the patch keeps the reference's
    # idea of how a text begins; without them, a prefix trained only on answers to domain prompts
    # can make the model expect such a prompt and misjudge ordinary text (perplexity up to 1.5x
    # on the miniature). 0 reproduces the paper's data exactly.
    anchor_samples: int = 64
    max_new_tokens: int = 32
    temperature: float = 1.0
    seed: int = 0
    device: str | None = None
    # The dtype the frozen model computes in (ppatch.train.modeling.COMPUTE_DTYPES): "auto" is
    # bfloat16 for models of 20M parameters or more on hardware with native bfloat16 products
    # (CUDA, or a CPU with AMX / AVX-512 BF16), float32 otherwise. The prefix stays float32.
    dtype: str = "auto"
    # Prompts go through the tokenizer's chat template when it has one (docs/training.md).
    chat_template: bool = True
    # Recompute activations in the backward pass: less memory, about a third more time.
    gradient_checkpointing: bool = False
    # The system message of the `system-prompt` reference (context distillation).
    safety_system_prompt: str = SAFETY_SYSTEM_PROMPT

    def steps_for(self, parameters: int) -> StepSettings:
        """The step settings of a run on a model of `parameters` parameters: each one given,
        else the size's default (`step_settings_for`)."""
        sized = step_settings_for(parameters)
        chosen = {}
        for setting in fields(StepSettings):
            given = getattr(self, setting.name)
            chosen[setting.name] = getattr(sized, setting.name) if given is None else given
        return StepSettings(**chosen)

    def sized_for(self, parameters: int) -> TrainConfig:
        """This configuration with every step setting filled in for the model's size: what a
        run records in its manifest."""
        return replace(self, **asdict(self.steps_for(parameters)))

    def hyperparameters(self) -> dict[str, Any]:
        """The settings recorded in the manifest (paths and identity left out)."""
        recorded = asdict(self)
        for key in ("base", "reference", "output", "name", "version", "domain", "prompts",
                    "pairs", "key", "summary", "license", "device", "init_text"):  # fmt: skip
            recorded.pop(key)
        return recorded
