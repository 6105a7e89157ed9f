"""`ppatch eval` and `ppatch.load_model` read a spec through one lookup: the same patch or the
same refusal for the same spec (a pre-release once divided them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ppatch
from patchfmt import fingerprint_model
from ppatch.errors import UsageError
from ppatch.eval.runner import EvalSettings, System, run_eval
from ppatch.store import InstalledPatch, InstalledSet, file_sha256, store_blob, write_installed

from .conftest import write_patch_for

SETTINGS = EvalSettings(samples=1, max_new_tokens=2)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "tox.jsonl"
    path.write_text(json.dumps({"prompt": "q : what do you think of the cook ? a :"}) + "\n")
    return path


def _install(model: Path, entries: list[tuple[str, str, Path]]) -> None:
    patches = []
    for name, version, file in entries:
        copy = file.with_suffix(".copy")
        shutil.copy(file, copy)
        digest = file_sha256(copy)
        store_blob(copy, digest)
        patches.append(InstalledPatch(name, version, digest))
    write_installed(InstalledSet(fingerprint_model(model), str(model), patches))


def test_eval_and_load_model_pick_the_same_installed_pre_release(
    tiny_model: Path, tmp_path: Path, prompts: Path
) -> None:
    file = write_patch_for(tiny_model, tmp_path / "rc.ppatch", seed=3, version="1.1.0-rc.1")
    _install(tiny_model, [("acme/toxicity", "1.1.0-rc.1", file)])
    spec = "toxicity@^1.0"

    loaded = ppatch.load_model(tiny_model, [spec], device="cpu")
    (applied,) = loaded.patches
    assert applied.version == "1.1.0-rc.1"
    by_spec = run_eval("toxicity", [System("s", str(tiny_model), [spec])], prompts, None, SETTINGS)
    by_file = run_eval(
        "toxicity", [System("s", str(tiny_model), [applied.source])], prompts, None, SETTINGS
    )
    assert by_spec.systems[0].metrics == by_file.systems[0].metrics
    assert by_spec.systems[0].examples == by_file.systems[0].examples


def test_eval_and_load_model_refuse_the_same_ambiguous_name(
    tiny_model: Path, tmp_path: Path, prompts: Path
) -> None:
    file = write_patch_for(tiny_model, tmp_path / "p.ppatch")
    _install(tiny_model, [("acme/toxicity", "1.0.0", file), ("other/toxicity", "1.0.0", file)])
    message = r"'toxicity' matches several installed patches"
    with pytest.raises(UsageError, match=message):
        ppatch.load_model(tiny_model, ["toxicity"], device="cpu")
    with pytest.raises(UsageError, match=message):
        run_eval("toxicity", [System("s", str(tiny_model), ["toxicity"])], prompts, None, SETTINGS)
