"""The registry under an anonymous load, with its latency target asserted (issue 16).

Runs `tests/hardening/test_registry_load.py` with PPATCH_LOAD_TARGETS=1: 30 releases with ~1 MB
manifests, then 8 parallel anonymous clients for 20 s (search p99 <= 50 ms, server RSS growth
<= 150 MB) and an 80 MB update-check body (refused in <= 1 s, RSS growth <= 50 MB). The suite runs
the same scenario without the latency assertion; run this on a quiet machine and copy the printed
figures into docs/security.md ("Measured").

    python benchmarks/registry_load.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = {**os.environ, "PPATCH_LOAD_TARGETS": "1"}
    command = [
        sys.executable, "-m", "pytest", "-s", "-rxX", "-p", "no:cacheprovider",
        str(ROOT / "tests" / "hardening" / "test_registry_load.py"),
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
