"""The package's surface: what it exports, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import patchfmt


def test_all_names_exist() -> None:
    missing = [name for name in patchfmt.__all__ if not hasattr(patchfmt, name)]
    assert missing == []
    assert sorted(patchfmt.__all__) == sorted(set(patchfmt.__all__))


def test_errors_subclass_the_matching_builtins() -> None:
    assert issubclass(patchfmt.InvalidManifestError, ValueError)
    assert issubclass(patchfmt.ModelNotFoundError, FileNotFoundError)
    for name in patchfmt.__all__:
        value = getattr(patchfmt, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, patchfmt.PatchFormatError), name


def test_import_pulls_no_torch_and_no_hub() -> None:
    # Registry hosts and cron jobs import patchfmt; torch and huggingface_hub must stay out.
    code = "import sys, patchfmt; print(sorted({'torch', 'huggingface_hub'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
