"""Where transformers reads a model from: a folder in Hugging Face layout, or one GGUF file.

A GGUF file (llama.cpp's single-file format, often quantized) is read through transformers' own
GGUF support (`from_pretrained(folder, gguf_file=name)`), which dequantizes every tensor; the
model then runs in float32 unless another dtype is asked for, because the quantized types have no
torch equivalent. Its tokenizer, chat template included, comes from the same file's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchfmt import is_gguf_file

__all__ = ["ModelSource", "model_source"]


@dataclass(frozen=True)
class ModelSource:
    """The first argument of `from_pretrained` and the keyword arguments that go with it."""

    folder: Path
    arguments: dict[str, Any]

    @property
    def is_gguf(self) -> bool:
        return "gguf_file" in self.arguments


def model_source(path: Path) -> ModelSource:
    """`path` as transformers takes it: a GGUF file is its folder plus `gguf_file=` its name."""
    if is_gguf_file(path):
        return ModelSource(path.parent, {"gguf_file": path.name})
    return ModelSource(path, {})
