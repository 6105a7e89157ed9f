"""benchmarks/apply.py still runs end to end (a one-cell grid on a toy model)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

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
            "--threads", "0", "--output", str(output),
        ]
    )  # fmt: skip

    assert code == 0
    document = json.loads(output.read_text())
    (cell,) = document["cells"]
    variants = {"bare", "ppatch", "peft", "bare-again"}
    assert set(cell["prefill_ms"]) == set(cell["generate_ms"]) == variants
    assert (cell["batch"], cell["prompt_tokens"]) == (2, 6)
    assert "| 2 | 6 |" in capsys.readouterr().out
