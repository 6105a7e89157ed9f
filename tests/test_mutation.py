"""The CI subset of mutation testing: every comparison operator of the range matcher, flipped one
at a time by mutmut, is caught by tests/patchfmt/test_versions.py.

The full run over the security-relevant modules is `benchmarks/mutation.py` (docs/testing.md);
this keeps the cheapest, most central part of it in every CI run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `_compare`'s `!=` branch and its unknown-operator error are unreachable: npm ranges have no
# `!=` and NpmSpec never emits one (docs/testing.md, "Surviving mutants").
EQUIVALENT = {f"patchfmt.versions.x__compare__mutmut_{n}" for n in range(29, 34)}


@pytest.mark.timeout(900)
def test_every_range_operator_mutant_is_killed() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mutation.py"), "patchfmt/versions.py",
         "--only", "patchfmt.versions.x__compare*"],
        capture_output=True, text=True, timeout=880, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    survivors = {
        line.strip().partition(": ")[0]
        for line in result.stdout.splitlines()
        if line.startswith("    ")
    }
    killed = [line for line in result.stdout.splitlines() if "killed=" in line]
    assert killed, result.stdout  # mutmut ran and judged mutants
    assert survivors <= EQUIVALENT, f"mutants not killed: {sorted(survivors - EQUIVALENT)}"
