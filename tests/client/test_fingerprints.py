"""One home for model fingerprints: every client path caches under PPATCH_HOME."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

import ppatch
from ppatch import constants
from ppatch.fingerprints import model_fingerprint

CLIENT = Path(ppatch.__file__).parent


def _calls_to_fingerprint_model(source: str) -> int:
    calls = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            function = node.func
            name = (
                function.attr
                if isinstance(function, ast.Attribute)
                else getattr(function, "id", "")
            )
            calls += name == "fingerprint_model"
    return calls


def test_only_the_fingerprints_module_calls_patchfmt_directly() -> None:
    callers = {
        str(path.relative_to(CLIENT))
        for path in CLIENT.rglob("*.py")
        if _calls_to_fingerprint_model(path.read_text("utf-8"))
    }
    assert callers == {"fingerprints.py"}


def test_the_cache_lives_under_ppatch_home_and_nowhere_else(tmp_path: Path, ppatch: Any) -> None:
    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": np.ones((2, 2), np.float32)}, str(model / "model.safetensors"))
    fingerprint = model_fingerprint(model)
    home = Path(os.environ["PPATCH_HOME"])
    cached = list(constants.fingerprint_cache_dir().glob("*.json"))
    assert len(cached) == 1 and home in cached[0].parents
    assert fingerprint in cached[0].read_text()
    assert not any(Path(os.environ["XDG_CACHE_HOME"]).rglob("*.json"))
    # The CLI reads the same entry: a second fingerprint of the model adds no file.
    result = ppatch("fingerprint", model)
    assert result.out.strip() == fingerprint
    assert list(constants.fingerprint_cache_dir().glob("*.json")) == cached
