"""GGUF files converted once: the dequantized model saved as a Hugging Face folder in ppatch's
cache, so later loads read float32 safetensors in seconds instead of dequantizing every tensor
and rebuilding the tokenizer from the file's metadata (30-250 s for SmolLM2-135M on a shared
two-core machine; docs/training.md, "Speed").

The folder is keyed by the GGUF file's SHA-256 and the transformers version that converted it
(a later version may dequantize or build the tokenizer differently), and written to a temporary
folder renamed into place, so a reader never sees half a conversion. It is a cache only: the
model's identity stays the GGUF file's (its fingerprint, docs/format.md 6.3, and the
`name_or_path` a GGUF load gives: the file's folder).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ppatch.constants import cache_dir

__all__ = ["converted_folder", "save_converted"]

# Written last into a conversion, so a folder without it is never read.
COMPLETE_MARK = "conversion-complete"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_folder(gguf: Path, cache: Path | None = None) -> Path:
    """Where the conversion of `gguf` lives (it may not exist yet)."""
    import transformers

    root = (cache or cache_dir()) / "converted-gguf"
    return root / f"{_sha256(gguf)}-transformers-{transformers.__version__}"


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARK).is_file()


def _save_model(model: Any, folder: Path) -> None:
    """The weights as safetensors and the configuration without its GGUF quantization entry:
    transformers refuses `save_pretrained` on a model it loaded from GGUF, although the
    tensors it holds are plain float32 after dequantization."""
    import copy

    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    # save_model writes tensors shared between modules (tied embeddings) once.
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def save_converted(model: Any, tokenizer: Any, folder: Path) -> bool:
    """Save `model` (float32, as dequantized) and `tokenizer` into `folder`, atomically; False
    when the cache cannot be written (a read-only cache is no reason to fail a load)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    except OSError:
        return False
    try:
        _save_model(model, staging)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE_MARK).write_text("", encoding="utf-8")
        staging.rename(folder)
    except (OSError, ValueError, RuntimeError):
        # Another process may have finished the same conversion first; either way, no half
        # folder stays behind.
        shutil.rmtree(staging, ignore_errors=True)
        return is_complete(folder)
    return True
