"""`train_patch(config)`: from a base model, a reference model and prompts to a signed `.ppatch`.

The steps, each a function so the benchmark can run the ablation without writing files:
check every input (cheap, before any model loads), load both models, generate the preference
data (the reference's answers preferred, the base model's rejected), train the soft prompt
(SFT, then DPO with the frozen SFT prompt as reference policy), measure it, and write the patch
atomically at the very end, so Ctrl-C or an error leaves no output behind.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppatch.errors import ConflictError, NotFoundError, UsageError
from ppatch.output_paths import check_parent_creatable
from ppatch.train.config import RULE_REFUSAL, STAGES, TrainConfig, check_compute_dtype
from ppatch.train.data import InvalidDataFileError, PreferencePair, read_pairs, read_prompts
from ppatch.train.modeling import (
    LoadedModel,
    answer_logprobs,
    check_same_vocabulary,
    encode,
    encode_prompt,
    generate,
    gradient_checkpointing,
    load_model,
    parameter_count,
    threads_for,
)
from ppatch.train.soft_prompt import initial_prompt
from ppatch.train.stages import Example, PairExample, train_dpo, train_sft

if TYPE_CHECKING:
    import torch

__all__ = [
    "PreferenceData",
    "check_config",
    "fit_prompt",
    "generate_preference_data",
    "load_reference",
    "measure_preferences",
    "pairs_from_file",
    "rule_preference_data",
    "train_patch",
]


@dataclass
class PreferenceData:
    """Tokenized training data and its description for the manifest."""

    sft: list[Example]
    pairs: list[PairExample]
    description: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


def check_config(config: TrainConfig) -> None:
    """Every check that needs no model, so bad input fails in a second and writes nothing."""
    if config.output.exists():
        raise ConflictError(
            f"output {str(config.output)!r} already exists; remove it or choose another -o"
        )
    check_parent_creatable(config.output)
    if (config.prompts is None) == (config.pairs is None):
        raise UsageError("give exactly one of --prompts and --pairs")
    if config.prompts is not None and config.reference is None:
        raise UsageError("--prompts needs --reference: its answers are the preferred ones")
    if config.stages not in STAGES:
        raise UsageError(f"stages must be one of {', '.join(STAGES)}, got {config.stages!r}")
    for flag, value in (
        ("--virtual-tokens", config.virtual_tokens),
        ("--batch-size", config.batch_size),
        ("--samples-per-prompt", config.samples_per_prompt),
        ("--max-new-tokens", config.max_new_tokens),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value!r}")
    for flag, number in (
        ("--sft-steps", config.sft_steps),
        ("--dpo-steps", config.dpo_steps),
        ("--anchor-samples", config.anchor_samples),
    ):
        if number is not None and number < 0:
            raise UsageError(f"{flag} must not be negative, got {number!r}")
    for flag, rate in (
        ("--sft-lr", config.sft_learning_rate),
        ("--dpo-lr", config.dpo_learning_rate),
        ("--beta", config.beta),
    ):
        if rate is not None and not rate > 0:
            raise UsageError(f"{flag} must be positive, got {rate!r}")
    if config.dpo_nll_weight < 0:
        raise UsageError(f"--dpo-nll-weight must not be negative, got {config.dpo_nll_weight!r}")
    check_compute_dtype(config.dtype)
    if config.temperature < 0:
        raise UsageError(f"--temperature must not be negative, got {config.temperature!r}")
    if config.key is not None:
        _load_key(config.key)
    # The manifest's own validation (name, version, domain, ...) on placeholder weights: a bad
    # flag is a usage error here, before any work, not a verification failure at the end.
    from patchfmt import PatchFormatError

    try:
        _manifest(config, _placeholder_weights(config), "sha256:" + "0" * 64, {}, {})
    except PatchFormatError as error:
        raise UsageError(f"invalid patch metadata: {error}") from error


def _load_key(path: Path) -> Any:
    from patchfmt import load_private_key

    if not path.is_file():
        raise NotFoundError(f"signing key {str(path)!r} not found")
    return load_private_key(path.read_bytes())


def _placeholder_weights(config: TrainConfig) -> bytes:
    import numpy

    from patchfmt import weights_from_array

    return weights_from_array(numpy.zeros((max(config.virtual_tokens, 1), 1), dtype="float32"))


def _manifest(
    config: TrainConfig,
    weights: bytes,
    base_fingerprint: str,
    training: dict[str, Any],
    evaluation: dict[str, Any],
) -> Any:
    from patchfmt import build_manifest

    return build_manifest(
        {
            "name": config.name,
            "version": config.version,
            "domain": config.domain,
            "summary": config.summary or f"{config.domain} patch trained with ppatch",
            "license": config.license,
            "base_model": {"id": _model_label(config.base), "fingerprint": base_fingerprint},
            "training": training,
            "evaluation": evaluation,
        },
        weights,
    )


def _model_label(model: str) -> str:
    path = Path(model)
    return path.name if path.is_dir() or path.is_file() else model


def _answers_with_end(answers: Sequence[Sequence[int]], eos: int) -> list[list[int]]:
    return [[*answer, eos] for answer in answers]


def generate_preference_data(
    config: TrainConfig,
    base: LoadedModel,
    reference: LoadedModel,
    records: list[dict[str, Any]] | None = None,
) -> PreferenceData:
    """k answers per prompt from each model: the reference's preferred, the base's rejected.

    Pairs whose two answers are identical teach DPO nothing and are dropped from it; every
    reference answer is an SFT example.
    """
    if records is None:
        assert config.prompts is not None
        records = read_prompts(config.prompts)
    prompt_ids = [encode_prompt(base, record["prompt"]) for record in records]
    # The reference reads each prompt its own way (a system prompt, its own template); the
    # patch is trained on the base model's reading of it: context distillation.
    reference_ids = [encode_prompt(reference, record["prompt"]) for record in records]
    settings = {
        "samples": config.samples_per_prompt,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "seed": config.seed,
    }
    preferred, rejected = (
        generate(
            model,
            None,
            ids,
            samples=config.samples_per_prompt,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=seed,
        )
        for model, ids, seed in (
            (reference, reference_ids, config.seed),
            (base, prompt_ids, config.seed + 1),
        )
    )
    eos = base.eos_id
    sft: list[Example] = []
    pairs: list[PairExample] = []
    for ids, good_answers, bad_answers in zip(prompt_ids, preferred, rejected, strict=True):
        good = _answers_with_end(good_answers, eos)
        bad = _answers_with_end(bad_answers, eos)
        sft += [Example(ids, answer) for answer in good]
        pairs += [PairExample(ids, g, b) for g, b in zip(good, bad, strict=True) if g != b]
    identical = len(sft) - len(pairs)
    anchors = _anchor_examples(config, base, reference)
    sft += anchors
    description = {
        "source": "generated",
        "prompts": len(records),
        "sft_examples": len(sft),
        "anchor_examples": len(anchors),
        "preference_pairs": len(pairs),
        "identical_pairs_dropped": identical,
        "generation": {
            "sampling": "multinomial" if config.temperature > 0 else "greedy",
            **settings,
        },
    }
    return PreferenceData(sft, pairs, description, records)


def rule_preference_data(
    config: TrainConfig, base: LoadedModel, records: list[dict[str, Any]]
) -> PreferenceData:
    """The `rules` reference: for a `kind: harmful` prompt a fixed refusal is preferred over
    each of the base model's answers; for a `kind: benign` one each of the base model's own
    answers is preferred over that refusal. The patch learns where to refuse, not only to."""
    harmful = [record.get("kind") == "harmful" for record in records]
    prompt_ids = [encode_prompt(base, record["prompt"]) for record in records]
    answers = generate(
        base,
        None,
        prompt_ids,
        samples=config.samples_per_prompt,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed + 1,
    )
    eos = base.eos_id
    refusal = [*encode(base, RULE_REFUSAL, special=False), eos]
    sft: list[Example] = []
    pairs: list[PairExample] = []
    for ids, is_harmful, own in zip(prompt_ids, harmful, answers, strict=True):
        own_answers = [answer for answer in _answers_with_end(own, eos) if answer != refusal]
        if is_harmful:
            sft.append(Example(ids, refusal))
            pairs += [PairExample(ids, refusal, answer) for answer in own_answers]
        else:
            sft += [Example(ids, answer) for answer in own_answers]
            pairs += [PairExample(ids, answer, refusal) for answer in own_answers]
    anchors = _anchor_examples(config, base, base)
    sft += anchors
    description = {
        "source": "rules: refusal for harmful prompts, the base model's answers for benign ones",
        "prompts": len(records),
        "harmful_prompts": sum(harmful),
        "sft_examples": len(sft),
        "anchor_examples": len(anchors),
        "preference_pairs": len(pairs),
        "refusal": RULE_REFUSAL,
        "generation": {
            "sampling": "multinomial" if config.temperature > 0 else "greedy",
            "samples": config.samples_per_prompt,
            "max_new_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "seed": config.seed,
        },
    }
    return PreferenceData(sft, pairs, description, records)


def check_rule_records(path: Path, records: list[dict[str, Any]]) -> None:
    """The `rules` reference needs to know which prompts are harmful."""
    for number, record in enumerate(records, start=1):
        if record.get("kind") not in ("harmful", "benign"):
            raise InvalidDataFileError(
                path,
                number,
                "--reference rules needs 'kind': 'harmful' or 'benign', "
                f"got {record.get('kind')!r}",
            )


def load_reference(config: TrainConfig, base: LoadedModel) -> LoadedModel | None:
    """The reference model `config.reference` names: none for `rules`, the base model with the
    safety system prompt for `system-prompt`, else a model loaded beside the base."""
    from ppatch.chat import has_chat_template

    if config.reference is None or config.reference == "rules":
        return None
    if config.reference == "system-prompt":
        if not has_chat_template(base.tokenizer) or not config.chat_template:
            raise UsageError(
                "--reference system-prompt needs a base model whose tokenizer has a chat "
                "template, used (no --no-chat-template)"
            )
        return LoadedModel(
            base.path,
            base.model,
            base.tokenizer,
            chat_template=True,
            system_prompt=config.safety_system_prompt,
        )
    reference = load_model(
        config.reference, config.device, chat_template=config.chat_template, dtype=config.dtype
    )
    check_same_vocabulary(base, reference)
    return reference


def _anchor_examples(
    config: TrainConfig, base: LoadedModel, reference: LoadedModel
) -> list[Example]:
    """Texts the reference writes from the beginning-of-text token alone, as SFT examples.

    They pin down how the patched model continues a bare beginning of text, which training on
    domain prompts alone leaves free. A tokenizer that adds no beginning-of-text token gives an
    empty prompt, and no anchors (nothing to condition on).
    """
    start = encode(base, "")
    if config.anchor_samples == 0 or not start:
        return []
    (texts,) = generate(
        reference,
        None,
        [start],
        samples=config.anchor_samples,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed + 4,
    )
    return [Example(start, [*text, base.eos_id]) for text in texts]


def pairs_from_file(
    config: TrainConfig, base: LoadedModel, records: list[PreferencePair] | None = None
) -> PreferenceData:
    if records is None:
        assert config.pairs is not None
        records = read_pairs(config.pairs)
    eos = base.eos_id
    sft: list[Example] = []
    pairs: list[PairExample] = []
    for pair in records:
        ids = encode_prompt(base, pair.prompt)
        chosen = [*encode(base, pair.chosen, special=False), eos]
        rejected = [*encode(base, pair.rejected, special=False), eos]
        sft.append(Example(ids, chosen))
        if chosen != rejected:
            pairs.append(PairExample(ids, chosen, rejected))
    description = {
        "source": "pairs file",
        "prompts": len({tuple(e.prompt) for e in sft}),
        "sft_examples": len(sft),
        "preference_pairs": len(pairs),
        "identical_pairs_dropped": len(sft) - len(pairs),
    }
    return PreferenceData(sft, pairs, description)


def fit_prompt(config: TrainConfig, base: LoadedModel, data: PreferenceData) -> torch.Tensor:
    """Run the configured stages and return the trained `[virtual_tokens, hidden]` prompt.

    DPO's reference policy is the frozen prompt DPO starts from: the SFT prompt after SFT (the
    paper's choice: DPO refines the SFT policy and is kept close to it), or the initial prompt
    when DPO runs alone.
    """
    import torch

    torch.manual_seed(config.seed)
    prompt = initial_prompt(base, config.virtual_tokens, config.init_text, config.seed)
    with gradient_checkpointing(base, config.gradient_checkpointing):
        return _run_stages(config, base, data, prompt)


def _run_stages(
    config: TrainConfig, base: LoadedModel, data: PreferenceData, prompt: torch.Tensor
) -> torch.Tensor:
    steps = config.steps_for(parameter_count(base.model))
    if "sft" in config.stages and steps.sft_steps > 0:
        if not data.sft:
            raise UsageError("no SFT examples: the data file gave no answers")
        prompt = train_sft(
            base,
            prompt,
            data.sft,
            steps=steps.sft_steps,
            learning_rate=steps.sft_learning_rate,
            batch_size=steps.batch_size,
            seed=config.seed,
        )
    if "dpo" in config.stages and steps.dpo_steps > 0:
        if not data.pairs:
            raise UsageError("no preference pairs: every chosen answer equals its rejected answer")
        prompt = train_dpo(
            base,
            prompt,
            prompt.clone(),
            data.pairs,
            steps=steps.dpo_steps,
            learning_rate=steps.dpo_learning_rate,
            batch_size=steps.batch_size,
            beta=config.beta,
            seed=config.seed + 2,
            chosen_nll_weight=config.dpo_nll_weight,
        )
    trained: torch.Tensor = prompt.cpu().float()
    return trained


def measure_preferences(
    base: LoadedModel, prompt: torch.Tensor, pairs: Sequence[PairExample], batch_size: int = 64
) -> dict[str, float]:
    """How far the patch moved the model towards the preferred answers, on the training pairs:
    DPO's implicit reward r(y) = log p_patched(y) - log p_bare(y); accuracy is how often
    r(chosen) > r(rejected), margin its mean difference."""
    import torch

    if not pairs:
        return {}
    rewards: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            prompts = [p.prompt for p in chunk] * 2
            answers = [p.chosen for p in chunk] + [p.rejected for p in chunk]
            patched, _ = answer_logprobs(base, prompt.to(base.device), prompts, answers)
            bare, _ = answer_logprobs(base, None, prompts, answers)
            reward = (patched - bare).cpu()
            rewards.append(reward[: len(chunk)] - reward[len(chunk) :])
    margins = torch.cat(rewards)
    return {
        "pairs": float(len(pairs)),
        "preference_accuracy": float((margins > 0).float().mean()),
        "reward_margin": float(margins.mean()),
    }


def _fingerprint(model: Path) -> str:
    from ppatch.fingerprints import model_fingerprint

    return model_fingerprint(model)


def train_patch(config: TrainConfig) -> Path:
    """Train a patch as `config` says and write it to `config.output`; returns that path."""
    check_config(config)
    private_key = _load_key(config.key) if config.key is not None else None
    # Data files are read before any model loads: a malformed line fails in a second.
    prompt_records = read_prompts(config.prompts) if config.prompts is not None else None
    if config.reference == "rules" and prompt_records is not None:
        assert config.prompts is not None
        check_rule_records(config.prompts, prompt_records)
    pair_records = read_pairs(config.pairs) if config.pairs is not None else None
    base = load_model(
        config.base, config.device, chat_template=config.chat_template, dtype=config.dtype
    )
    # Steps, learning rates and batch size left open take the model size's defaults, and the
    # manifest records the values used.
    config = config.sized_for(parameter_count(base.model))
    with threads_for(base.model):
        return _train_loaded(config, base, private_key, prompt_records, pair_records)


def _train_loaded(
    config: TrainConfig,
    base: LoadedModel,
    private_key: Any,
    prompt_records: list[dict[str, Any]] | None,
    pair_records: list[PreferencePair] | None,
) -> Path:
    import numpy

    from patchfmt import weights_from_array, write_patch

    reference = load_reference(config, base)
    if config.prompts is not None and config.reference == "rules":
        assert prompt_records is not None
        data = rule_preference_data(config, base, prompt_records)
    elif config.prompts is not None:
        assert reference is not None
        data = generate_preference_data(config, base, reference, prompt_records)
    else:
        data = pairs_from_file(config, base, pair_records)
    prompt = fit_prompt(config, base, data)

    evaluation: dict[str, Any] = {
        "measured": _measured_at(),
        "training_pairs": measure_preferences(base, prompt, data.pairs),
    }
    suite = _suite_evaluation(config, base, reference, prompt, data.records)
    if suite:
        evaluation["training_prompts"] = suite
    training: dict[str, Any] = {
        "method": "soft prompt: SFT then DPO"
        if config.stages == "sft+dpo"
        else f"soft prompt: {config.stages.upper()} only",
        "stages": config.stages,
        "init_text": config.init_text,
        "init": "text" if config.init_text is not None else "sample_vocab",
        "dpo_reference_policy": "frozen SFT prompt"
        if config.stages == "sft+dpo"
        else "frozen initial prompt",
        "hyperparameters": config.hyperparameters(),
        "data": data.description,
    }
    if config.reference in ("rules", "system-prompt"):
        training["reference_model"] = {"kind": config.reference}
        if config.reference == "system-prompt":
            training["reference_model"]["system_prompt"] = config.safety_system_prompt
    elif reference is not None:
        assert config.reference is not None
        training["reference_model"] = {
            "id": _model_label(config.reference),
            "fingerprint": _fingerprint(reference.path),
        }
    weights = weights_from_array(numpy.ascontiguousarray(prompt.numpy(), dtype=numpy.float32))
    manifest = _manifest(config, weights, _fingerprint(base.path), training, evaluation)
    # Missing folders above -o are made only now: a run that fails before leaves none behind.
    config.output.parent.mkdir(parents=True, exist_ok=True)
    write_patch(config.output, manifest, weights, private_key)
    output: Path = config.output
    return output


def _measured_at() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible-builds.org), as for the manifest's
    `created`: with it, two runs with the same inputs and seed write the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
        if epoch and epoch.isdigit()
        else datetime.datetime.now(datetime.UTC)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _suite_evaluation(
    config: TrainConfig,
    base: LoadedModel,
    reference: LoadedModel | None,
    prompt: torch.Tensor,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The domain's suite on the training prompts, when the domain is a built-in suite and the
    records carry what it needs; empty otherwise (a custom domain, or a pairs file)."""
    from ppatch.eval.suites import SUITES, suite_accepts

    if config.domain not in SUITES or not records or not suite_accepts(config.domain, records):
        return {}
    from ppatch.eval.runner import System, evaluate_loaded

    systems = [System("base", config.base, []), System("base+patch", config.base, [])]
    loaded: list[tuple[System, LoadedModel, torch.Tensor | None]] = [
        (systems[0], base, None),
        (systems[1], base, prompt),
    ]
    if reference is not None and config.reference is not None:
        loaded.append((System("reference", config.reference, []), reference, None))
    report = evaluate_loaded(
        config.domain,
        records,
        loaded,
        samples=config.samples_per_prompt,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed + 3,
    )
    return {"suite": config.domain, "prompts": len(records), **report.summary()}
