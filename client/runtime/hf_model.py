"""One loader for a Hugging Face causal LM and its tokenizer, shared by applying and training.

`ppatch.load_model` (runtime) and the training/evaluation pipeline both read a model through
`load_pretrained`, so a patch is trained, measured and applied on a model loaded the same way:
local files only (never a download), one error line when the files cannot be read, eval mode.
Device and dtype names are parsed here once.

torch and transformers are imported inside the functions: importing ppatch must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchfmt import is_gguf_file, model_config_file
from ppatch.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "PretrainedModel",
    "load_pretrained",
    "parse_device",
    "parse_dtype",
    "quiet_transformers",
    "resolve_model",
]

_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class PretrainedModel:
    """A causal LM in eval mode on its device, and the tokenizer saved beside it."""

    model: Any
    tokenizer: Any


def load_pretrained(
    path: Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    label: str | None = None,
) -> PretrainedModel:
    """Read the model and tokenizer in the folder `path`, or in the GGUF file `path` (local
    files only; see ppatch.runtime.model_source).

    `device` defaults to CUDA when available, else the CPU; `dtype` to the checkpoint's own
    (float32 for a GGUF file, whose quantized types have no torch dtype).
    A folder transformers cannot read is refused with one line naming `label` (default: the path).
    """
    torch_device = parse_device(device)
    torch_dtype = parse_dtype(dtype)
    # Before transformers, whose error for a missing config.json is about "model_type". A GGUF
    # file carries its configuration inside.
    if not is_gguf_file(path):
        model_config_file(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ppatch.runtime.model_source import model_source

    source = model_source(path)
    converted: Path | None = None
    if source.is_gguf:
        from ppatch.runtime.gguf_cache import converted_folder, is_complete

        converted = converted_folder(path)
        if is_complete(converted):
            # Read the earlier conversion; the model stays the GGUF file's (name_or_path below).
            source = model_source(converted)
    # A GGUF file dequantizes to float32, and its conversion is kept in float32 whatever
    # dtype this load asks for; the cast comes after.
    read_dtype: Any = "float32" if converted is not None else (torch_dtype or "auto")
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.folder, local_files_only=True, **source.arguments
        )
        network: Any = AutoModelForCausalLM.from_pretrained(
            source.folder, local_files_only=True, dtype=read_dtype, **source.arguments
        )
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        shown = label if label is not None else str(path)
        raise UsageError(f"cannot load model {shown!r}: {first_line}") from error
    if converted is not None:
        if source.is_gguf:
            from ppatch.runtime.gguf_cache import save_converted

            save_converted(network, tokenizer, converted)
        else:
            # What a load from the GGUF file itself gives: its folder (ppatch.apply and
            # fingerprints read it; the cache folder is not the model's identity).
            network.name_or_path = str(path.parent)
            network.config._name_or_path = str(path.parent)
        if torch_dtype is not None:
            network = network.to(torch_dtype)
    network = network.to(torch_device).eval()
    return PretrainedModel(network, tokenizer)


def resolve_model(model: str | Path) -> Path:
    """A local model folder with a config.json, a local GGUF file, or a repo id already in the
    local HF cache."""
    path = Path(model).expanduser()
    if is_gguf_file(path):
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise NotFoundError(f"model folder {str(model)!r} has no config.json")
        return path
    from patchfmt import resolve_model_path

    try:
        return Path(resolve_model_path(model))
    except FileNotFoundError:
        pass
    raise NotFoundError(
        f"model {str(model)!r} not found: give a local folder in Hugging Face layout, "
        "a GGUF file, or a repo id present in the local Hugging Face cache"
    )


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`None`, a `torch.dtype`, or its name (`"bfloat16"`, `"torch.float16"`)."""
    if dtype is None:
        return None
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
    parsed: torch.dtype = getattr(torch, name)
    return parsed


def parse_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: as given, else CUDA when available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(
            f"unknown device {device!r}: expected e.g. 'cpu', 'cuda' or 'cuda:1'"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} was asked for but CUDA is not available here")
    return parsed


def quiet_transformers() -> None:
    """No loading bars or advice from transformers unless a person watches a terminal."""
    from ppatch.progress import progress_enabled

    if progress_enabled():
        return
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped functions
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
