"""The four evaluation suites: what each needs from a prompt file and how it measures a model.

- `toxicity`: k samples per prompt, scored by a toxicity scorer; expected maximum toxicity
  (primary) and toxicity probability.
- `bias`: k samples per profession prompt (records carry `group`); the rate of gendered words
  (primary) and the gap between groups.
- `harm`: k samples per request (records carry `kind`: `harmful` or `benign`); the refusal rate
  on harmful requests (primary) and the answer rate on benign ones, so over-refusal shows.
- `fluency`: perplexity of the model on neutral text (`prompt` or `text` field): every token
  after the tokenizer's beginning-of-text token, or after the first token when it adds none.

Prompts of the generating suites go through the model's chat template when it has one
(`LoadedModel.chat_template`); fluency scores the text itself, never templated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ppatch.eval import metrics
from ppatch.eval.scorers import Scorer
from ppatch.train.modeling import LoadedModel, answer_logprobs, encode, encode_prompt, generate

if TYPE_CHECKING:
    import torch

__all__ = ["SUITES", "Suite", "record_problem", "run_suite", "suite_accepts"]


@dataclass(frozen=True)
class Suite:
    name: str
    primary: str
    higher_is_better: bool
    # A record field the suite needs besides the text, and its allowed values (None: any).
    field: str | None = None
    values: frozenset[str] | None = None


SUITES: dict[str, Suite] = {
    "toxicity": Suite("toxicity", "expected_max_toxicity", higher_is_better=False),
    "bias": Suite("bias", "gendered_rate", higher_is_better=False, field="group"),
    "harm": Suite(
        "harm",
        "refusal_rate",
        higher_is_better=True,
        field="kind",
        values=frozenset({"harmful", "benign"}),
    ),
    "fluency": Suite("fluency", "perplexity", higher_is_better=False),
}


def _text(record: dict[str, Any]) -> Any:
    return record.get("prompt", record.get("text"))


def record_problem(suite: str, record: dict[str, Any]) -> str | None:
    """What is wrong with `record` for `suite`, or None when it is usable."""
    spec = SUITES[suite]
    text = _text(record)
    if not isinstance(text, str) or not text.strip():
        key = "'prompt' (or 'text')" if suite == "fluency" else "'prompt'"
        return f"{key} must be a non-empty string, got {text!r}"
    if spec.field is not None:
        value = record.get(spec.field)
        if not isinstance(value, str) or not value:
            return f"the {suite} suite needs a string {spec.field!r} on every line, got {value!r}"
        if spec.values is not None and value not in spec.values:
            allowed = " or ".join(repr(v) for v in sorted(spec.values))
            return f"{spec.field!r} must be {allowed}, got {value!r}"
    return None


def suite_accepts(suite: str, records: Sequence[dict[str, Any]]) -> bool:
    return all(record_problem(suite, record) is None for record in records)


def _generate_texts(
    loaded: LoadedModel,
    prefix: torch.Tensor | None,
    records: Sequence[dict[str, Any]],
    *,
    samples: int,
    max_new_tokens: int,
    seed: int,
    temperature: float,
) -> list[list[str]]:
    ids = [encode_prompt(loaded, _text(record)) for record in records]
    answers = generate(
        loaded, prefix, ids, samples=samples, max_new_tokens=max_new_tokens,
        temperature=temperature, seed=seed,
    )  # fmt: skip
    return [
        [loaded.tokenizer.decode(a, skip_special_tokens=True) for a in per_prompt]
        for per_prompt in answers
    ]


def _fluency(
    loaded: LoadedModel, prefix: torch.Tensor | None, records: Sequence[dict[str, Any]]
) -> dict[str, float]:
    import torch

    total = 0.0
    tokens = 0
    with torch.no_grad():
        for start in range(0, len(records), 64):
            ids = [encode(loaded, _text(r)) for r in records[start : start + 64]]
            usable = [i for i in ids if len(i) >= 2]
            if not usable:
                continue
            logprobs, counts = answer_logprobs(
                loaded,
                None if prefix is None else prefix.to(loaded.device),
                [i[:1] for i in usable],
                [i[1:] for i in usable],
            )
            total += float(logprobs.sum())
            tokens += int(counts.sum())
    return {"perplexity": metrics.perplexity(total, tokens), "tokens": float(tokens)}


def run_suite(
    suite: str,
    loaded: LoadedModel,
    prefix: torch.Tensor | None,
    records: Sequence[dict[str, Any]],
    *,
    scorer: Scorer | None,
    samples: int,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> tuple[dict[str, float], list[list[str]]]:
    """The suite's measures for one model (with `prefix` prepended when given), and the
    generated texts (empty for fluency). `temperature` 0 samples greedily."""
    if suite == "fluency":
        return _fluency(loaded, prefix, records), []
    texts = _generate_texts(
        loaded, prefix, records, samples=samples, max_new_tokens=max_new_tokens, seed=seed,
        temperature=temperature,
    )  # fmt: skip
    if suite == "bias":
        by_group: dict[str, list[str]] = {}
        for record, per_prompt in zip(records, texts, strict=True):
            by_group.setdefault(str(record["group"]), []).extend(per_prompt)
        return metrics.bias_measures(by_group), texts
    if scorer is None:
        raise ValueError(f"the {suite} suite needs a scorer")
    if suite == "toxicity":
        scores = [scorer.score(per_prompt) for per_prompt in texts]
        return {
            "expected_max_toxicity": metrics.expected_maximum_toxicity(scores),
            "toxicity_probability": metrics.toxicity_probability(scores),
            "mean_toxicity": sum(map(sum, scores)) / sum(map(len, scores)),
        }, texts
    harmful = [
        t for r, ts in zip(records, texts, strict=True) if r["kind"] == "harmful" for t in ts
    ]
    benign = [t for r, ts in zip(records, texts, strict=True) if r["kind"] == "benign" for t in ts]
    measures: dict[str, float] = {}
    if harmful:
        measures["refusal_rate"] = metrics.rate(scorer.score(harmful))
    if benign:
        measures["benign_answer_rate"] = 1.0 - metrics.rate(scorer.score(benign))
    return measures, texts
