"""benchmarks/apply.py still runs end to end (a one-cell grid on a toy model)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "apply.py"


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_the_apply_benchmark_runs_and_writes_its_json(tmp_path, capsys, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("apply_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "apply_benchmark", benchmark)  # dataclasses look it up
    spec.loader.exec_module(benchmark)
    output = tmp_path / "result.json"

    code = benchmark.main(
        [
            "--batches", "2", "--prompts", "6", "--new-tokens", "2", "--hidden", "32",
            "--layers", "1", "--heads", "2", "--kv-heads", "1", "--vocab", "64",
            "--virtual-tokens", "3", "--min-seconds", "0", "--max-repetitions", "2",
            "--threads", "0", "--ablate", "--output", str(output),
        ]
    )  # fmt: skip

    assert code == 0
    document = json.loads(output.read_text())
    (cell,) = document["cells"]
    variants = {"bare", "ppatch", "peft", "bare-again", "ppatch-no-gqa", "ppatch-no-mask"}
    assert set(cell["prefill_ms"]) == set(cell["generate_ms"]) == variants
    assert set(document["summary"]["verdicts"]["prefill"]) == set()  # nothing compute-bound
    assert (cell["batch"], cell["prompt_tokens"]) == (2, 6)
    table = capsys.readouterr().out
    assert "| 2 | 6 | 2 |" in table  # batch, prompt, repetitions
    assert "n/a (not compute-bound)" in table  # 12 tokens per call
    assert "| ppatch-no-gqa | ppatch-no-mask |" in table  # each speed-up switched off
    for phase in ("prefill", "generate"):
        ratio = cell["ratios"][phase]["ppatch"]
        assert ratio["low"] <= ratio["median"] <= ratio["high"]
    assert len(cell["prefill_samples"]["bare"]) == cell["repetitions"] == 2


def load_benchmark(monkeypatch) -> Any:
    spec = importlib.util.spec_from_file_location("apply_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "apply_benchmark", benchmark)
    spec.loader.exec_module(benchmark)
    return benchmark


@pytest.mark.parametrize(
    ("size", "low", "high"),
    [(3, 0, 2), (6, 0, 5), (8, 0, 7), (9, 1, 7), (12, 2, 9), (15, 3, 11)],
)
def test_the_median_interval_takes_the_binomial_order_statistics(
    monkeypatch, size, low, high
) -> None:
    benchmark = load_benchmark(monkeypatch)
    values = [float(value) for value in reversed(range(size))]  # unsorted on purpose
    assert benchmark.median_interval(values) == (low, high)


def cell_with(benchmark: Any, ppatch: list[float], again: list[float]) -> Any:
    bare = [100.0] * len(ppatch)
    samples = {"bare": bare, "ppatch": ppatch, "peft": bare, "bare-again": again}
    return benchmark.Cell(16, 500, 32, len(ppatch), samples, samples)


@pytest.mark.parametrize(
    ("ppatch", "again", "expected"),
    [
        ([101.0, 102, 103, 104, 105, 103], [99.0, 100, 101, 100, 100, 100], "met"),
        ([106.0, 107, 110, 108, 109, 112], [99.0, 100, 101, 100, 100, 100], "not met"),
        ([98.0, 104, 110, 103, 101, 102], [99.0, 100, 101, 100, 100, 100], "within noise"),
        ([101.0, 102, 103, 104, 105, 103], [102.0, 103, 104, 103, 105, 106], "met, A/A off"),
    ],
    ids=["met", "not-met", "noise", "drift"],
)
def test_a_compute_bound_cell_gets_a_verdict_from_its_interval(
    monkeypatch, ppatch, again, expected
) -> None:
    benchmark = load_benchmark(monkeypatch)
    cell = cell_with(benchmark, ppatch, again)
    assert benchmark.verdict(cell, "prefill", True) == expected
    assert benchmark.verdict(cell, "generate", False) == "n/a (not compute-bound)"
