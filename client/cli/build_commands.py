"""`ppatch train`, `ppatch eval` and `ppatch miniature build`: the vendor's build side.

Thin wrappers over `ppatch.train.pipeline.train_patch`, `ppatch.eval.runner.run_eval` and
`ppatch.miniature.world.build_world`; torch, transformers and matplotlib load inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppatch.errors import ConflictError, NotFoundError, UsageError
from ppatch.train.config import (
    COMPUTE_DTYPES,
    MINIATURE_STEPS,
    REAL_MODEL_STEPS,
    SMALL_MODEL_PARAMETERS,
    STAGES,
    TrainConfig,
)

__all__ = ["register"]

# A numeric option of `train` or `eval`: flag, type, default, help text before the default.
_Knob = tuple[str, type, Any, str]

_DEFAULTS = TrainConfig(base="", reference=None, output=Path(), name="", version="", domain="")


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)
    _register_miniature(subparsers)


def _register_train(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a patch (soft prompt: SFT then DPO) from a base and a reference model",
        description=(
            "Generate answers from the reference model (preferred) and the base model "
            "(rejected), train a soft prompt on the frozen base model with SFT then DPO, and "
            "write a signed .ppatch. Steps, learning rates and batch size default by model "
            "size; see docs/training.md."
        ),
    )
    parser.add_argument("--base", required=True, metavar="MODEL", help="the model to patch")
    parser.add_argument(
        "--reference",
        metavar="MODEL",
        help="the safer model whose behaviour the patch imitates: a model, 'system-prompt' (the "
        "base model with a safety system prompt) or 'rules' (a refusal for kind=harmful "
        "prompts, the base model's answer for kind=benign ones); see docs/training.md",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--prompts", type=Path, metavar="P.jsonl", help='{"prompt": ...} per line')
    data.add_argument(
        "--pairs",
        type=Path,
        metavar="PAIRS.jsonl",
        help='pre-generated {"prompt", "chosen", "rejected"} per line',
    )
    parser.add_argument("--name", required=True, metavar="NS/NAME")
    parser.add_argument("--version", required=True, metavar="V")
    parser.add_argument(
        "--domain", required=True, metavar="D", help="toxicity, bias, harm, custom:WORD"
    )
    parser.add_argument(
        "--key", type=Path, metavar="KEY", help="Ed25519 private key (PEM) to sign with"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FILE.ppatch")
    parser.add_argument("--summary", default="", help="one line for the manifest")
    parser.add_argument("--license", default=_DEFAULTS.license)
    d = _DEFAULTS
    knobs: list[_Knob] = [
        ("--virtual-tokens", int, d.virtual_tokens, "prefix length (the paper's 50)"),
        ("--init-text", str, d.init_text, "initialise from this text (PEFT TEXT init)"),
        ("--stages", str, d.stages, f"which stages run: {', '.join(STAGES)}"),
        ("--sft-steps", int, None, f"SFT optimizer steps {_sized('sft_steps')}"),
        ("--sft-lr", float, None, f"SFT learning rate {_sized('sft_learning_rate')}"),
        ("--dpo-steps", int, None, f"DPO optimizer steps {_sized('dpo_steps')}"),
        ("--dpo-lr", float, None, f"DPO learning rate {_sized('dpo_learning_rate')}"),
        ("--beta", float, d.beta, "DPO beta"),
        ("--dpo-nll-weight", float, d.dpo_nll_weight, "chosen-answer NLL added to DPO (0: pure)"),
        ("--batch-size", int, None, f"examples (or pairs) per step {_sized('batch_size')}"),
        ("--samples-per-prompt", int, d.samples_per_prompt, "answers per prompt from each model"),
        ("--anchor-samples", int, d.anchor_samples, "reference texts from no prompt, for fluency"),
        ("--max-new-tokens", int, d.max_new_tokens, "longest generated answer"),
        ("--temperature", float, d.temperature, "sampling temperature (0: greedy)"),
        ("--seed", int, d.seed, "seed for initialisation, sampling and batch order"),
    ]  # fmt: skip
    _add_run_flags(parser, knobs)
    _add_chat_template_flag(parser)
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less memory, more time",
    )
    parser.set_defaults(handler=_train)


def _sized(setting: str) -> str:
    """The help text's note on a setting whose default follows the model's size."""
    small = getattr(MINIATURE_STEPS, setting)
    real = getattr(REAL_MODEL_STEPS, setting)
    return (
        f"(default: {small} under {SMALL_MODEL_PARAMETERS // 1_000_000}M parameters, {real} above)"
    )


def _add_chat_template_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="give prompts as plain text even when the tokenizer has a chat template",
    )


def _add_run_flags(
    parser: argparse.ArgumentParser,
    knobs: Sequence[_Knob],
    plain: Sequence[tuple[str, str]] = (),
) -> None:
    """The tail `train` and `eval` share, in this order: the numeric knobs (each help text ends
    with its default), then plain string options (flag, help), then --device and --dtype."""
    for flag, kind, default, text in knobs:
        # strip: a knob may have no text of its own, only its default (eval's --max-new-tokens).
        help_text = (text if default is None else f"{text} (default: {default})").strip()
        parser.add_argument(flag, type=kind, default=default, help=help_text)
    for flag, text in plain:
        parser.add_argument(flag, help=text)
    parser.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    parser.add_argument(
        "--dtype",
        default=_DEFAULTS.dtype,
        help=f"dtype the frozen model computes in: {', '.join(COMPUTE_DTYPES)} (default: auto, "
        "bfloat16 for models of 20M+ parameters where the device has native bfloat16, else "
        "float32)",
    )


def _train(args: argparse.Namespace) -> int:
    from ppatch.train.pipeline import train_patch

    if args.stages not in STAGES:
        raise UsageError(f"--stages must be one of {', '.join(STAGES)}, got {args.stages!r}")
    config = TrainConfig(
        base=args.base,
        reference=args.reference,
        output=args.output,
        name=args.name,
        version=args.version,
        domain=args.domain,
        prompts=args.prompts,
        pairs=args.pairs,
        key=args.key,
        summary=args.summary,
        license=args.license,
        virtual_tokens=args.virtual_tokens,
        init_text=args.init_text,
        stages=args.stages,
        sft_steps=args.sft_steps,
        sft_learning_rate=args.sft_lr,
        dpo_steps=args.dpo_steps,
        dpo_learning_rate=args.dpo_lr,
        beta=args.beta,
        dpo_nll_weight=args.dpo_nll_weight,
        batch_size=args.batch_size,
        samples_per_prompt=args.samples_per_prompt,
        anchor_samples=args.anchor_samples,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        chat_template=args.chat_template,
        gradient_checkpointing=args.gradient_checkpointing,
        dtype=args.dtype,
    )
    path = train_patch(config)
    print(f"wrote {path}")
    return 0


class _SystemPart(argparse.Action):
    """Collects --model and --patch in command-line order: a --patch belongs to the --model
    before it, so `--model M --model M --patch p.ppatch --model M2` is three systems."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parts = list(getattr(namespace, "system_parts", None) or [])
        kind = "model" if option_string == "--model" else "patch"
        parts.append((kind, str(values)))
        namespace.system_parts = parts


def _register_eval(subparsers: Any) -> None:
    from ppatch.eval.suites import SUITES

    parser = subparsers.add_parser(
        "eval",
        help="evaluate models with and without patches on a safety suite",
        description=(
            "Score one or more systems (a model, or a model with patches) on a suite and write "
            "report.json, report.md and PNG charts into -o. Systems: repeat --model, each "
            "followed by its --patch options; or --compare MODEL MODEL+PATCH ..."
        ),
    )
    parser.add_argument("--model", action=_SystemPart, metavar="MODEL", help="a system's model")
    parser.add_argument(
        "--patch",
        action=_SystemPart,
        metavar="FILE_OR_SPEC",
        help="a patch for the --model before it (repeat to compose)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="SYSTEM",
        help="systems written MODEL or MODEL+PATCH[+PATCH...]",
    )
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--prompts", required=True, type=Path, metavar="P.jsonl")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT_DIR")
    knobs: list[_Knob] = [
        ("--samples", int, 4, "samples per prompt"),
        ("--max-new-tokens", int, 32, ""),
        ("--seed", int, 0, "sampling seed"),
    ]
    scorer_help = (
        "toxicity: 'lexicon' (default), 'profanity-check' or a local classifier folder; "
        "harm: 'pattern' (default) or a local classifier folder"
    )
    plain = [("--scorer", scorer_help), ("--scorer-label", "the classifier's positive label")]
    _add_run_flags(parser, knobs, plain)
    _add_chat_template_flag(parser)
    parser.set_defaults(handler=_eval, system_parts=None)


def _systems(args: argparse.Namespace) -> list[Any]:
    from ppatch.eval.runner import System, parse_system

    systems: list[System] = []
    for kind, value in args.system_parts or []:
        if kind == "model":
            systems.append(
                parse_system(value) if "+" in value else System(Path(value).name or value, value)
            )
        elif not systems:
            raise UsageError(f"--patch {value!r} comes before any --model; put it after its model")
        else:
            last = systems[-1]
            systems[-1] = parse_system("+".join([last.model, *last.patches, value]))
    systems += [parse_system(text) for text in args.compare]
    if not systems:
        raise UsageError("give at least one --model or --compare system")
    return systems


def _eval(args: argparse.Namespace) -> int:
    from ppatch.eval.runner import EvalSettings, run_eval
    from ppatch.eval.suites import SUITES

    if args.suite not in SUITES:
        raise UsageError(f"unknown suite {args.suite!r}; choose one of {', '.join(SUITES)}")
    report = run_eval(
        args.suite,
        _systems(args),
        args.prompts,
        args.output,
        EvalSettings(
            samples=args.samples,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            scorer=args.scorer,
            scorer_label=args.scorer_label,
            device=args.device,
            chat_template=args.chat_template,
            dtype=args.dtype,
        ),
    )
    sys.stdout.write(report.markdown())
    print(f"wrote {args.output}")
    return 0


def _register_miniature(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "miniature",
        help="the miniature world: tiny base and reference models with prompt files",
        description="Build (or reuse) the miniature world used by the tests, demo and benchmark.",
    )
    actions = parser.add_subparsers(metavar="ACTION", required=True, parser_class=type(parser))
    build = actions.add_parser(
        "build",
        help="train the tiny base and reference models and write the prompt files",
        description=(
            "Trains a base model M and a reference model M' from scratch (about two minutes "
            "on two CPU cores) and writes toxicity, bias, harm and fluency prompt files. A "
            "second call with the same settings reuses the world already in DIR."
        ),
    )
    build.add_argument("--dir", required=True, type=Path, metavar="DIR")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--link",
        type=Path,
        metavar="FOLDER",
        help="also make FOLDER/base-model, FOLDER/reference-model and FOLDER/prompts point at "
        "the world (the names the guides use); existing links are replaced, nothing else",
    )
    build.set_defaults(handler=_miniature_build)


_LINK_NAMES = ("base-model", "reference-model", "prompts")


def _link_targets(folder: Path) -> list[Path]:
    """The three link paths under `folder`, checked before the (long) build: a real file or
    folder of that name is never replaced."""
    if not folder.is_dir():
        raise NotFoundError(f"--link {str(folder)!r} is not an existing folder")
    links = [folder / name for name in _LINK_NAMES]
    taken = [str(link) for link in links if link.exists() and not link.is_symlink()]
    if taken:
        raise ConflictError(
            f"--link would replace {', '.join(repr(t) for t in taken)}, which is not a link; "
            "move it or link into another folder"
        )
    return links


def _miniature_build(args: argparse.Namespace) -> int:
    from ppatch.miniature.grammar import DOMAINS
    from ppatch.miniature.world import WorldConfig, build_world

    if args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"--dir {str(args.dir)!r} exists and is not a folder")
    links = _link_targets(args.link) if args.link is not None else []
    world = build_world(args.dir, WorldConfig(seed=args.seed))
    targets = (world.base, world.reference, world.directory / "prompts")
    for link, target in zip(links, targets, strict=False):
        link.unlink(missing_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=True)
        print(f"linked {link} -> {target.resolve()}")
    print(f"base model:      {world.base}")
    print(f"reference model: {world.reference}")
    for domain in DOMAINS:
        print(f"{domain} prompts:  {world.prompts(domain, 'train')} (train)")
        print(f"{' ' * len(domain)}           {world.prompts(domain, 'eval')} (held out)")
    print(f"fluency texts:   {world.fluency_prompts}")
    return 0
