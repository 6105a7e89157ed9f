"""Any byte sequence is a valid patch or a `PatchFormatError`: never another exception, a hang
or a memory blow-up. Hypothesis explores in-process; the hostile corpus and seeded mutations
run in a subprocess under RLIMIT_AS and a timeout (benchmarks/fuzz_reader.py, which also runs
atheris outside CI)."""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patchfmt

ROOT = Path(__file__).resolve().parents[2]
FUZZ_SCRIPT = ROOT / "benchmarks" / "fuzz_reader.py"
MEMORY_CAP = 1024**3  # a 64 MiB patch reads in far less; a blow-up hits this instead of the host
SUBPROCESS_TIMEOUT = 120


def _load_fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_reader", FUZZ_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_module()

EXPECTED = {
    "valid": "valid",
    "valid_unsigned": "valid",
    "valid_rebuilt": "valid",
    "empty": "InvalidContainerError",
    "zip_bomb_deflated": "InvalidContainerError",
    "declared_4gib": "InvalidContainerError",
    "declared_63mib": "InvalidContainerError",
    "end_record_only": "InvalidContainerError",
    "manifest_nested_arrays_200k": "InvalidManifestError",
    "manifest_nested_objects_100k": "InvalidManifestError",
    "manifest_evaluation_nested_900": "InvalidManifestError",
    "signature_nested_arrays_2k": "SignatureError",
    "safetensors_header_2^63": "InvalidWeightsError",
    "safetensors_header_2^64-1": "InvalidWeightsError",
    "safetensors_header_beyond_file": "InvalidWeightsError",
    "safetensors_header_oversized": "InvalidWeightsError",
    "safetensors_header_nested_10k": "InvalidWeightsError",
    "safetensors_huge_shape": "InvalidWeightsError",
    "safetensors_nan": "InvalidWeightsError",
    "manifest_invalid_utf8": "InvalidManifestError",
    "truncated_half": "InvalidContainerError",
}


@pytest.fixture(scope="module")
def crafted() -> dict[str, bytes]:
    cases: dict[str, bytes] = fuzz.crafted_inputs()
    return cases


def test_every_crafted_input_has_an_expected_outcome(crafted: dict[str, bytes]) -> None:
    assert set(crafted) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_input_gives_its_typed_error(crafted: dict[str, bytes], name: str) -> None:
    assert fuzz.classify(crafted[name]) == EXPECTED[name]


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _run_capped(*args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(FUZZ_SCRIPT), *args],
        preexec_fn=_capped,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-2000:]
    summary: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return summary


def test_crafted_corpus_under_memory_cap(crafted: dict[str, bytes], tmp_path: Path) -> None:
    paths = []
    for name, data in crafted.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))
    summary = _run_capped("--check", *paths)
    assert summary["inputs"] == len(crafted)
    assert summary["outcomes"]["valid"] == 3


def test_seeded_mutations_under_memory_cap() -> None:
    summary = _run_capped("--mutations", "1500", "--seed", "20261128")
    assert summary["inputs"] == 1500 + len(EXPECTED)
    # The mutations reach past the container into every parser (CRCs are fixed up).
    assert {"InvalidContainerError", "InvalidManifestError", "SignatureError"} <= set(
        summary["outcomes"]
    )


def _format_errors() -> set[str]:
    names: set[str] = set()
    pending: list[type] = [patchfmt.PatchFormatError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


TYPED_OUTCOMES = {"valid"} | _format_errors()


def _assert_typed(data: bytes) -> None:
    # classify() lets any exception other than a PatchFormatError escape, failing the test.
    assert fuzz.classify(data) in TYPED_OUTCOMES


FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _assert_typed(data)


GOOD = fuzz.valid_patch()
ENTRIES = fuzz._entries(GOOD)


@FUZZ_SETTINGS
@given(
    entry=st.sampled_from([name for name, _ in ENTRIES]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.binary(min_size=0, max_size=8)),
        min_size=1,
        max_size=6,
    ),
)
def test_entry_edits_with_valid_crcs(entry: str, edits: list[tuple[int, bytes]]) -> None:
    content = bytearray(dict(ENTRIES)[entry])
    for position, replacement in edits:
        at = position % (len(content) + 1)
        content[at : at + len(replacement)] = replacement
    _assert_typed(fuzz._replace_entry(GOOD, entry, bytes(content)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ_SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(
    ["format", "name", "version", "files", "patch", "base_model", "evaluation", "requires",
     "training", "created", "summary", "extra"]), JSON_VALUES, min_size=1, max_size=4))  # fmt: skip
def test_manifest_fields_replaced_by_arbitrary_json(overrides: dict[str, Any]) -> None:
    manifest = json.loads(dict(ENTRIES)["manifest.json"])
    manifest.update(overrides)
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    _assert_typed(fuzz._replace_entry(GOOD, "manifest.json", canonical))


@FUZZ_SETTINGS
@given(
    header=st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=3),
    tail=st.binary(max_size=64),
)
def test_arbitrary_safetensors_headers(header: dict[str, Any], tail: bytes) -> None:
    encoded = json.dumps(header).encode()
    weights = len(encoded).to_bytes(8, "little") + encoded + tail
    _assert_typed(fuzz._with_weights(GOOD, weights))


def test_harness_reports_an_escaping_exception(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The harness itself can fail: an exception other than `PatchFormatError` is a violation."""

    def broken(data: bytes) -> None:
        raise RecursionError("escaped")

    monkeypatch.setattr(fuzz.patchfmt, "read_patch", broken)
    assert fuzz._run(iter([("bad-input", b"PK")])) == 1
    report = json.loads(capsys.readouterr().out.strip())
    assert report["violation"] == "bad-input"
    assert report["error"] == "RecursionError: escaped"
