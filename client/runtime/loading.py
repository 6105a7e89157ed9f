"""`load_model` and `apply`: from a model and patch names or files to a `PatchedModel`.

Steps, each its own function: find the model (a local directory or the local Hugging Face cache,
never a download), fingerprint it, resolve the patches (installed ones, specs matched against the
installed set, or `.ppatch` files), refuse any patch built for another model, then load the
weights. Everything that can be refused is refused before the weights are read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from patchfmt import (
    PatchFile,
    check_fingerprint,
    read_patch,
    resolve_model_path,
)
from ppatch.errors import NotFoundError, UsageError
from ppatch.fingerprints import model_fingerprint
from ppatch.installed import installed_file
from ppatch.runtime.hf_model import load_pretrained, parse_device, parse_dtype
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel
from ppatch.store import installed_patch_paths

if TYPE_CHECKING:
    import torch

__all__ = [
    "PatchSource",
    "applied_from_patch_file",
    "apply",
    "load_model",
    "resolve_patches",
]

PatchSource: TypeAlias = str | os.PathLike[str] | PatchFile | AppliedPatch

WEIGHTS_FILE = "weights.safetensors"


def load_model(
    model: str | os.PathLike[str],
    patches: Sequence[PatchSource] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> PatchedModel:
    """Load a causal LM and its tokenizer from `model`, run with patches.

    `patches=None` applies the model's installed patches in installation order; a list applies
    exactly those, in that order (`[]` runs the bare model). Each is a `.ppatch` path, a spec
    such as `acme/toxicity@1.2` matched against the installed patches, or a `PatchFile`.
    `device` defaults to CUDA when available, else the CPU; `dtype` to the checkpoint's.
    """
    # Parsed first: a bad device or dtype is refused before anything is read.
    torch_dtype = parse_dtype(dtype)
    torch_device = parse_device(device)
    path = resolve_model_path(os.fspath(model))
    fingerprint = model_fingerprint(path)
    applied = resolve_patches(patches, fingerprint)
    loaded = load_pretrained(path, device=torch_device, dtype=torch_dtype, label=os.fspath(model))
    return PatchedModel(loaded.model, applied, tokenizer=loaded.tokenizer)


def apply(
    model: Any,
    patches: Sequence[PatchSource] | None = None,
    *,
    tokenizer: Any = None,
    fingerprint: str | None = None,
) -> PatchedModel:
    """Run a model the caller already loaded with patches (see `load_model` for `patches`).

    The model's fingerprint is computed from the directory it was loaded from
    (`model.name_or_path`) unless `fingerprint` is given. Applying to a `PatchedModel` replaces
    its patches.
    """
    if isinstance(model, PatchedModel):
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        model = model.model
    if fingerprint is None:
        fingerprint = _fingerprint_of_loaded(model)
    return PatchedModel(model, resolve_patches(patches, fingerprint), tokenizer=tokenizer)


def resolve_patches(patches: Sequence[PatchSource] | None, fingerprint: str) -> list[AppliedPatch]:
    """The patches to apply, in order, each checked against the model's fingerprint."""
    if patches is None:
        return [
            _checked(read_patch(path), fingerprint, source=str(path))
            for path in installed_patch_paths(fingerprint)
        ]
    if isinstance(patches, str | os.PathLike):
        raise UsageError(f"patches must be a list, got the single value {str(patches)!r}")
    applied: list[AppliedPatch] = []
    for source in patches:
        if isinstance(source, AppliedPatch):
            applied.append(source)
        elif isinstance(source, PatchFile):
            check_fingerprint(source.manifest, fingerprint)
            applied.append(applied_from_patch_file(source, source="<PatchFile>"))
        elif isinstance(source, os.PathLike) or _looks_like_a_path(source):
            path = Path(source)
            if not path.is_file():
                raise NotFoundError(f"patch file {str(path)!r} does not exist")
            applied.append(_checked(read_patch(path), fingerprint, source=str(path)))
        elif isinstance(source, str):
            path = installed_file(fingerprint, source)
            applied.append(_checked(read_patch(path), fingerprint, source=str(path)))
        else:
            raise UsageError(
                f"cannot apply {source!r}: expected a .ppatch path, a spec such as "
                "'acme/toxicity@1.2', a PatchFile or an AppliedPatch"
            )
    _refuse_duplicates(applied)
    return applied


def applied_from_patch_file(patch: PatchFile, *, source: str) -> AppliedPatch:
    manifest = patch.manifest
    return AppliedPatch(
        name=manifest.name,
        version=manifest.version,
        weights_sha256=manifest.files[WEIGHTS_FILE].sha256,
        embeddings=patch.embeddings(),
        source=source,
    )


def _checked(patch: PatchFile, fingerprint: str, *, source: str) -> AppliedPatch:
    check_fingerprint(patch.manifest, fingerprint)
    return applied_from_patch_file(patch, source=source)


def _looks_like_a_path(source: object) -> bool:
    if not isinstance(source, str):
        return False
    # Specs contain "/" too (`acme/toxicity`), so only the suffix or an existing file decide.
    return source.endswith(".ppatch") or Path(source).is_file()


def _refuse_duplicates(applied: Sequence[AppliedPatch]) -> None:
    seen: set[str] = set()
    for patch in applied:
        if patch.name in seen and patch.name != "in-memory":
            raise UsageError(f"patch {patch.name!r} is given twice; apply each package once")
        seen.add(patch.name)


def _fingerprint_of_loaded(model: Any) -> str:
    origin = str(getattr(model, "name_or_path", "") or "")
    if not origin:
        raise UsageError(
            "cannot tell which model this is (it has no name_or_path): pass fingerprint= "
            "(see 'ppatch fingerprint MODEL') or load it with ppatch.load_model"
        )
    return model_fingerprint(resolve_model_path(origin))
