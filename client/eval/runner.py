"""`run_eval`: score any number of systems (a model, or a model with patches) on one suite.

A system is written `MODEL` or `MODEL+PATCH[+PATCH...]`, so one run compares M, M with the
patch and M' as the paper's figures do. Patches are `.ppatch` files, or specs of patches
installed for that model (`acme/toxicity@1.2`); several compose by concatenation in the order
given. Every input is checked before any model loads, and the report folder appears whole at the
end or not at all.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppatch.errors import ConflictError, NotFoundError, UsageError
from ppatch.eval.report import Report, SystemResult
from ppatch.eval.scorers import Scorer, refusal_scorer, toxicity_scorer
from ppatch.eval.suites import SUITES, record_problem, run_suite
from ppatch.installed import installed_file
from ppatch.output_paths import check_parent_creatable
from ppatch.train.config import check_compute_dtype
from ppatch.train.data import InvalidDataFileError, read_jsonl
from ppatch.train.modeling import LoadedModel, load_model, threads_for

if TYPE_CHECKING:
    import torch

__all__ = [
    "EvalSettings",
    "System",
    "evaluate_loaded",
    "parse_system",
    "read_suite_records",
    "run_eval",
]

EXAMPLES_PER_SYSTEM = 6


@dataclass(frozen=True)
class System:
    label: str
    model: str
    patches: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvalSettings:
    samples: int = 4
    max_new_tokens: int = 32
    seed: int = 0
    scorer: str | None = None
    scorer_label: str | None = None
    device: str | None = None
    chat_template: bool = True
    # ppatch.train.config.COMPUTE_DTYPES; "auto" as `ppatch train` resolves it.
    dtype: str = "auto"


def _short(path_or_spec: str) -> str:
    path = Path(path_or_spec)
    return path.stem if path.suffix == ".ppatch" else path.name or path_or_spec


def parse_system(text: str) -> System:
    """`MODEL[+PATCH...]` to a system labelled by the folder and patch names."""
    parts = text.split("+")
    if any(not part.strip() for part in parts):
        raise UsageError(f"system {text!r} has an empty part; write MODEL or MODEL+PATCH[+PATCH]")
    model, patches = parts[0], parts[1:]
    label = "+".join([_short(model), *(_short(p) for p in patches)])
    return System(label, model, patches)


def _unique_labels(systems: Sequence[System]) -> list[System]:
    seen: dict[str, int] = {}
    unique: list[System] = []
    for system in systems:
        count = seen.get(system.label, 0)
        seen[system.label] = count + 1
        label = system.label if count == 0 else f"{system.label}#{count + 1}"
        unique.append(System(label, system.model, list(system.patches)))
    return unique


def read_suite_records(suite: str, path: Path) -> list[dict[str, Any]]:
    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    records = read_jsonl(path)
    for number, record in records:
        problem = record_problem(suite, record)
        if problem is not None:
            raise InvalidDataFileError(path, number, problem)
    if suite == "harm" and not any(r["kind"] == "harmful" for _, r in records):
        raise InvalidDataFileError(path, None, "the harm suite needs at least one harmful prompt")
    return [record for _, record in records]


def _load_patches(model: LoadedModel, patches: Sequence[str]) -> torch.Tensor | None:
    """The patches' embeddings, concatenated in order, after checking each fits the model."""
    import torch

    from patchfmt import check_fingerprint, read_patch
    from ppatch.fingerprints import model_fingerprint

    if not patches:
        return None
    fingerprint = model_fingerprint(model.path)
    rows = []
    for patch in patches:
        path = Path(patch)
        source = path if path.is_file() else installed_file(fingerprint, patch)
        patch_file = read_patch(source)
        check_fingerprint(patch_file.manifest, fingerprint)
        embeddings = patch_file.embeddings()
        if embeddings.shape[1] != model.hidden_size:
            raise UsageError(
                f"patch {patch!r} has hidden size {embeddings.shape[1]}, "
                f"the model {model.hidden_size}"
            )
        rows.append(torch.from_numpy(embeddings.copy()))
    return torch.cat(rows, dim=0)


def _scorer(suite: str, settings: EvalSettings) -> Scorer | None:
    if suite == "toxicity":
        return toxicity_scorer(settings.scorer, settings.scorer_label)
    if suite == "harm":
        return refusal_scorer(settings.scorer, settings.scorer_label)
    if settings.scorer is not None:
        raise UsageError(f"the {suite} suite takes no --scorer")
    return None


def evaluate_loaded(
    suite: str,
    records: Sequence[dict[str, Any]],
    systems: Sequence[tuple[System, LoadedModel, torch.Tensor | None]],
    *,
    samples: int,
    max_new_tokens: int,
    seed: int,
    scorer: Scorer | None = None,
) -> Report:
    """Score systems whose models and prefixes are already loaded. Every system samples with
    the same seed, so differences come from the models, not the dice."""
    spec = SUITES[suite]
    if scorer is None:
        scorer = _scorer(suite, EvalSettings())
    results: list[SystemResult] = []
    for system, loaded, prefix in systems:
        measures, texts = run_suite(
            suite, loaded, prefix, records, scorer=scorer, samples=samples,
            max_new_tokens=max_new_tokens, seed=seed,
        )  # fmt: skip
        examples = [
            {"prompt": records[i].get("prompt", records[i].get("text")), "answers": texts[i][:2]}
            for i in range(min(len(texts), EXAMPLES_PER_SYSTEM))
        ]
        results.append(SystemResult(system.label, system.model, system.patches, measures, examples))
    return Report(
        suite=suite,
        scorer=scorer.name if scorer is not None else None,
        primary=spec.primary,
        higher_is_better=spec.higher_is_better,
        settings={
            "samples_per_prompt": samples,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "temperature": 1.0,
            "prompts": len(records),
        },
        systems=results,
    )


def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConflictError(f"report folder {str(output)!r} already exists and is not empty")
    check_parent_creatable(output)


def run_eval(
    suite: str,
    systems: Sequence[System],
    prompts: Path,
    output: Path | None = None,
    settings: EvalSettings | None = None,
) -> Report:
    """Evaluate `systems` on `suite` over the prompt file; write the report into `output`
    (a new or empty folder) when given."""
    settings = settings or EvalSettings()
    if not systems:
        raise UsageError("give at least one model to evaluate")
    if settings.samples < 1 or settings.max_new_tokens < 1:
        raise UsageError("--samples and --max-new-tokens must be at least 1")
    check_compute_dtype(settings.dtype)
    if output is not None:
        _check_output(output)
    records = read_suite_records(suite, prompts)
    for system in systems:
        for patch in system.patches:
            if patch.endswith(".ppatch") and not Path(patch).is_file():
                raise NotFoundError(f"patch file {patch!r} not found")
    scorer = _scorer(suite, settings)
    models: dict[str, LoadedModel] = {}
    loaded: list[tuple[System, LoadedModel, torch.Tensor | None]] = []
    for system in _unique_labels(systems):
        if system.model not in models:
            models[system.model] = load_model(
                system.model,
                settings.device,
                chat_template=settings.chat_template,
                dtype=settings.dtype,
            )
        model = models[system.model]
        loaded.append((system, model, _load_patches(model, system.patches)))
    with threads_for(loaded[0][1].model):
        report = evaluate_loaded(
            suite, records, loaded, samples=settings.samples,
            max_new_tokens=settings.max_new_tokens, seed=settings.seed, scorer=scorer,
        )  # fmt: skip
    if output is not None:
        # Missing folders above the report are made now, not at the check: a run that fails
        # before it writes leaves none behind.
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{output.name}-", dir=output.parent))
        try:
            report.write(staging)
            if output.exists():
                output.rmdir()
            staging.rename(output)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return report
