"""Tuning for benchmarks/real_model.py on the validation split (never the test split).

    .venv/bin/python benchmarks/real_model_sweep.py --out OUT --domain harm \
        --grid sft_lr=0.01,0.03 virtual_tokens=20 [real_model.py's options]

Loads the model and builds the training data once (as real_model.py does, same splits and
seed), measures M on the validation split, then trains one patch of `--domain` per point of the
grid (every combination of the values given; other settings from the options) and measures it
on the validation split: refusal and benign-answer rates for harm, EMT and toxicity
probability for toxicity, perplexity on validation texts (pydoc_data paragraphs disjoint from
the test texts) for both. Writes OUT/sweep.json and prints one line per point.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import real_model

# Grid keys and the argument each sets.
GRID_KEYS = {
    "sft_lr": ("sft_learning_rate", float),
    "dpo_lr": ("dpo_learning_rate", float),
    "sft_steps": ("sft_steps", int),
    "dpo_steps": ("dpo_steps", int),
    "virtual_tokens": ("virtual_tokens", int),
    "dpo_nll_weight": ("dpo_nll_weight", float),
    "stages": ("stages", str),
}


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    axes: list[list[tuple[str, Any]]] = []
    for item in items:
        key, _, values = item.partition("=")
        if key not in GRID_KEYS or not values:
            raise SystemExit(f"error: grid item {item!r}: expected KEY=V1,V2 with KEY one of "
                             f"{', '.join(GRID_KEYS)}")  # fmt: skip
        field, kind = GRID_KEYS[key]
        axes.append([(field, kind(value)) for value in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)]


def main() -> int:
    parser = real_model.parser()
    parser.add_argument("--domain", choices=("harm", "toxicity"), required=True)
    parser.add_argument("--grid", nargs="+", default=[])
    args = parser.parse_args()
    points = parse_grid(args.grid)
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        print(f"[{time.perf_counter() - started:7.0f}s] {name}: "
              f"{time.perf_counter() - since:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
        return time.perf_counter()

    from ppatch.train.modeling import threads_for

    prepared = real_model.prepare(args, lap, (args.domain,))
    validation = {
        "harmful": prepared.harmful.validation,
        "benign": prepared.benign.validation,
        "toxic": prepared.toxic.validation,
        "text": prepared.paragraphs[args.texts :],
    }
    kinds = ("harm", "text") if args.domain == "harm" else ("toxicity", "text")
    config = prepared.harm_config if args.domain == "harm" else prepared.tox_config
    data = prepared.harm_data if args.domain == "harm" else prepared.tox_data
    results: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    with threads_for(prepared.base.model):
        mark = time.perf_counter()
        base_row, _ = real_model.measure(prepared.base, None, validation, args, kinds)
        mark = lap("evaluate M on validation", mark)
        print(json.dumps({"M": base_row}), flush=True)
        for point in points:
            point_config = replace(config, **point)
            stages = point_config.stages
            prompt, seconds = real_model.train(point_config, prepared.base, data, stages)
            row, examples = real_model.measure(prepared.base, prompt, validation, args, kinds)
            mark = lap(f"point {point}", mark)
            results.append({"point": point, "train_s": round(seconds, 1), "row": row,
                            "examples": examples})  # fmt: skip
            print(json.dumps({"point": point, "row": row}), flush=True)
            (args.out / "sweep.json").write_text(
                json.dumps({"M": base_row, "data": data.description, "points": results},
                           indent=2) + "\n", encoding="utf-8",
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
