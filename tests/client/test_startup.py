"""Registry-facing commands never import torch or transformers: cron jobs must start fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.client.conftest import Models, Registry

HEAVY = ("torch", "transformers")

PROBE = """
import json, sys
from ppatch.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = [name for name in {heavy!r} if name in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def probe(env: dict[str, str], *argv: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report: dict[str, object] = json.loads(completed.stderr.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("outdated", "--model", "{model}", "--json"),
        ("install", "acme/harm", "--model", "{model}", "--dry-run"),
    ],
)
def test_registry_commands_do_not_import_torch(
    argv: tuple[str, ...], registry: Registry, models: Models
) -> None:
    env = {**os.environ, "PPATCH_REGISTRY": registry.url}
    report = probe(env, *(arg.format(model=models.a) for arg in argv))
    assert report["heavy"] == []
    assert report["code"] in (0, 1)
