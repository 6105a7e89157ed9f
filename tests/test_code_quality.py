"""ruff and mypy are part of the suite, so CI fails on a lint or type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# mypy names modules after folders, and the client's folder `client/` is imported as `ppatch`
# (pyproject's package-dir mapping, which mypy cannot read). It type-checks a view of the tree in
# which the folders carry their import names, so `from ppatch.errors import ...` resolves.
IMPORT_NAMES = {"patchfmt": "patchfmt", "registry_server": "registry_server", "ppatch": "client"}


def run_mypy(view: Path) -> subprocess.CompletedProcess[str]:
    for import_name, folder in IMPORT_NAMES.items():
        (view / import_name).symlink_to(ROOT / folder, target_is_directory=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *IMPORT_NAMES,
        ],
        cwd=view,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
    ids=["ruff-check", "ruff-format"],
)
def test_ruff_is_clean(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean(tmp_path: Path) -> None:
    result = run_mypy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":
    # `python tests/test_code_quality.py` type-checks by hand with the same view.
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        outcome = run_mypy(Path(folder))
    print(outcome.stdout + outcome.stderr, end="")
    sys.exit(outcome.returncode)
