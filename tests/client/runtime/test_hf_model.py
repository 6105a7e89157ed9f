"""`ppatch.runtime.hf_model`: the one loader of a causal LM and its tokenizer, and its parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppatch.errors import NotFoundError, UsageError
from ppatch.runtime.hf_model import load_pretrained, parse_device, parse_dtype, resolve_model


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("float32", torch.float32),
        ("torch.bfloat16", torch.bfloat16),
        (torch.float16, torch.float16),
    ],
)
def test_dtypes_parse(value, expected) -> None:
    assert parse_dtype(value) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_dtype("float8"), "unknown dtype 'float8'"),
        (lambda: parse_device("toaster"), "unknown device 'toaster'"),
    ],
)
def test_bad_dtypes_and_devices_are_refused(call, message) -> None:
    with pytest.raises(UsageError, match=message):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only host")
def test_cuda_on_a_cpu_only_host_is_refused() -> None:
    with pytest.raises(UsageError, match="CUDA is not available"):
        parse_device("cuda")


def test_a_folder_transformers_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"^cannot load model 'broken': [^\n]*$"):
        load_pretrained(tmp_path, device="cpu", label="broken")


def test_a_loaded_model_is_in_eval_mode_with_the_asked_dtype(tiny_model_dir: Path) -> None:
    loaded = load_pretrained(tiny_model_dir, device="cpu", dtype="float64")
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float64
    assert loaded.tokenizer("hello")["input_ids"]


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no config\.json"):
        resolve_model(tmp_path)
