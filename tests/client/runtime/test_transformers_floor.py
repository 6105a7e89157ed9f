"""The `transformers` floor that pyproject declares is true: the runtime's tests pass on it.

The suite itself runs on the newest release the `ml` extra resolves to. This test installs the
declared floor (with the huggingface_hub release it needs) into a cached folder, `pip install
--no-deps --target`, and runs the runtime's equivalence tests there in a subprocess whose
PYTHONPATH puts that folder first. When the installed release is the floor, the suite already
runs on it and no second run is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[3]
# Releases the floor's transformers requires where the newest one's differ (its metadata's
# Requires-Dist); installed beside it. Change together with the floor in pyproject.toml.
FLOOR_COMPANIONS = ("huggingface_hub==1.5.0",)
# The runtime's equivalence tests: every architecture, the patched model, the prefix cache and
# the attention function.
TESTS = (
    "tests/client/runtime/test_architectures.py",
    "tests/client/runtime/test_patched_model.py",
    "tests/client/runtime/test_prefix.py",
    "tests/client/runtime/test_attention.py",
)


def declared_floor() -> str:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"]["ml"]:
        found = re.fullmatch(r"transformers>=([0-9.]+)", requirement.replace(" ", ""))
        if found:
            return found.group(1)
    raise AssertionError("pyproject's ml extra declares no transformers>=FLOOR")


def installed_floor(version: str) -> Path:
    """A folder holding transformers `version` and its companions, installed once per machine."""
    folder = Path.home() / ".cache" / "ppatch-tests" / f"transformers-{version}"
    if (folder / "transformers").is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Installed beside the target and renamed into place, so a broken install is never reused.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(staging),
                f"transformers=={version}",
                *FLOOR_COMPANIONS,
            ],
            check=True,
            timeout=300,
        )
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "transformers").is_dir():  # not another run's finished copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# A first run installs the floor (a minute on a quiet machine, more on a busy one) and runs
# four test files again: more than the suite's default per-test timeout allows.
@pytest.mark.timeout(1800)
def test_the_runtime_passes_its_tests_on_the_declared_transformers_floor() -> None:
    import transformers

    floor = declared_floor()
    if transformers.__version__ == floor:
        return  # this very suite runs on the floor
    assert tuple(map(int, transformers.__version__.split(".")[:3])) > tuple(
        map(int, floor.split("."))
    ), f"transformers {transformers.__version__} is installed, below the declared floor {floor}"
    environment = {**os.environ, "PYTHONPATH": str(installed_floor(floor))}
    version = subprocess.run(
        [sys.executable, "-c", "import transformers; print(transformers.__version__)"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == floor
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, (
        f"on transformers {floor}:\n{run.stdout[-4000:]}{run.stderr[-2000:]}"
    )
