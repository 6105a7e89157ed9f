"""GGUF conversions cached as Hugging Face folders: read back exactly, used only when complete,
and never the model's identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ppatch.errors import UsageError
from ppatch.runtime.gguf_cache import COMPLETE_MARK, converted_folder, save_converted
from ppatch.runtime.hf_model import load_pretrained


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits  # type: ignore[no-any-return]


def test_a_saved_conversion_reads_back_the_same_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    folder = tmp_path / "converted"
    assert save_converted(model, tokenizer, folder)
    assert (folder / COMPLETE_MARK).is_file()
    again = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer("q : how do i fix a car ? a :")["input_ids"]
    assert AutoTokenizer.from_pretrained(folder)("q : how do i fix a car ? a :")["input_ids"] == ids
    assert torch.equal(_logits(again, ids), _logits(model, ids))
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no staging folder left


def test_an_unwritable_cache_is_no_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert not save_converted(model, tokenizer, blocker / "converted")


def _fake_gguf(tmp_path: Path) -> Path:
    """Bytes transformers cannot read as GGUF: a load that reaches the file itself fails."""
    gguf = tmp_path / "models" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"not really gguf")
    return gguf


def test_a_complete_conversion_is_loaded_as_the_gguf_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    gguf = _fake_gguf(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert save_converted(model, tokenizer, converted_folder(gguf))
    loaded = load_pretrained(gguf, device="cpu")
    # Identity stays the GGUF file's: its folder, as a load from the file itself gives.
    assert loaded.model.name_or_path == str(gguf.parent)
    assert loaded.model.config._name_or_path == str(gguf.parent)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    ids = tokenizer("the cat sat")["input_ids"]
    assert torch.equal(_logits(loaded.model, ids), _logits(model, ids))
    # Another dtype is a cast of the float32 conversion.
    cast = load_pretrained(gguf, device="cpu", dtype="bfloat16").model
    assert {p.dtype for p in cast.parameters()} == {torch.bfloat16}
    assert torch.equal(_logits(cast, ids), _logits(model.to(torch.bfloat16), ids))


def test_an_incomplete_conversion_is_not_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    gguf = _fake_gguf(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    folder = converted_folder(gguf)
    assert save_converted(model, tokenizer, folder)
    (folder / COMPLETE_MARK).unlink()
    with pytest.raises(UsageError, match="cannot load model"):
        load_pretrained(gguf, device="cpu")


def test_the_conversion_is_keyed_by_the_file_bytes(tmp_path: Path) -> None:
    import hashlib

    gguf = _fake_gguf(tmp_path)
    first = converted_folder(gguf)
    assert first.name.startswith(hashlib.sha256(b"not really gguf").hexdigest() + "-transformers-")
    gguf.write_bytes(b"other bytes")
    assert converted_folder(gguf) != first
