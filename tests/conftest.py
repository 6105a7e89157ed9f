"""Fixtures shared by the whole suite.

Every test runs with its own home, cache and configuration directories, so no test reads or
writes the user's real state and tests cannot see each other's files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (`.ci/run` sets "ci"):
# - "ci": derandomized, so a CI run is reproducible (the same examples every run, and a failure
#   found once is found again); no deadline, because on a shared 2-core machine a 200 ms deadline
#   fails on scheduling noise rather than on slow code (speed is benchmarks/' business).
# - "dev" (the default): random examples, so local runs keep exploring new inputs; a 2 s
#   deadline still reports an example that hangs.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=timedelta(seconds=2), print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("env")
    for variable, sub in {
        "PPATCH_HOME": "ppatch-home",
        "XDG_CACHE_HOME": "xdg-cache",
        "XDG_CONFIG_HOME": "xdg-config",
        "XDG_DATA_HOME": "xdg-data",
        "HF_HOME": "hf-home",
        "PPATCH_REGISTRY_HOME": "registry-home",
    }.items():
        path = root / sub
        path.mkdir()
        monkeypatch.setenv(variable, str(path))
    for variable in (
        "PPATCH_REGISTRY",
        "PPATCH_TOKEN",
        "PPATCH_OFFLINE",
        "PPATCH_DEBUG",
        "PPATCH_REGISTRY_DATABASE_URL",
        "PPATCH_REGISTRY_STORAGE",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache = root / "hf-home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    # huggingface_hub reads its cache location once, at import: an earlier test's import would
    # otherwise point every later test at that test's folder.
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        monkeypatch.setattr(hub_constants, "HF_HOME", str(root / "hf-home"))
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("PPATCH_NO_PROGRESS", "1")
    yield root
