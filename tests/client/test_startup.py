"""Registry-facing commands never import torch or transformers, and `ppatch outdated` not even
httpx: cron jobs must start fast (benchmarks/client.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.client.conftest import Models, Registry

HEAVY = ("torch", "transformers")
# What the update check does without: the httpx stack (with the CLI extras it pulls in) and
# semantic_version, needed only when an installed and a latest version differ.
UPDATE_CHECK_AVOIDS = ("httpx", "httpcore", "h11", "anyio", "rich", "click", "semantic_version")

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


def probe(env: dict[str, str], *argv: str, heavy: tuple[str, ...] = HEAVY) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=heavy), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report: dict[str, object] = json.loads(completed.stderr.strip().splitlines()[-1])
    report["stdout"] = completed.stdout
    report["stderr"] = completed.stderr
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


def test_outdated_checks_the_registry_without_importing_httpx(
    registry: Registry, models: Models, ppatch: Any
) -> None:
    env = {**os.environ, "PPATCH_REGISTRY": registry.url}
    installed = ppatch("install", "acme/toxicity@1.3.0", "--model", models.a, "--registry",
                       registry.url)  # fmt: skip
    assert installed.code == 0, installed.err
    report = probe(env, "outdated", "--model", str(models.a), "--json", heavy=UPDATE_CHECK_AVOIDS)
    assert report["heavy"] == []
    assert report["code"] == 0
    # The registry was asked and answered: the package is known and current.
    [row] = json.loads(str(report["stdout"]))["packages"]
    assert (row["name"], row["latest"], row["found"]) == ("acme/toxicity", "1.3.0", True)


def test_outdated_through_a_proxy_falls_back_to_httpx(
    registry: Registry, models: Models, ppatch: Any
) -> None:
    ppatch("install", "acme/toxicity@1.3.0", "--model", models.a, "--registry", registry.url)
    unreachable_proxy = "http://127.0.0.1:9"
    env = {**os.environ, "PPATCH_REGISTRY": registry.url, "HTTP_PROXY": unreachable_proxy,
           "PPATCH_HTTP_RETRIES": "0"}  # fmt: skip
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    report = probe(env, "outdated", "--model", str(models.a), "--json", heavy=("httpx",))
    # The proxy was honoured, and it refuses: the check failed as unreachable (exit 6). The
    # first request is the probe for a signed index (urllib, which reads the proxy variables
    # itself), so it fails before the update check would load httpx for the proxy.
    assert report["code"] == 6
    assert "cannot reach the registry" in str(report["stderr"])  # it is up: the proxy refused
