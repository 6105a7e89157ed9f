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
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from patchfmt import (
    PackageSpec,
    PatchFile,
    check_fingerprint,
    fingerprint_model,
    parse_version,
    read_patch,
    resolve_model_path,
)
from ppatch.errors import NotFoundError, UsageError
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel
from ppatch.store import blob_path, installed_patch_paths, read_installed

if TYPE_CHECKING:
    import torch

__all__ = [
    "PatchSource",
    "applied_from_patch_file",
    "apply",
    "load_model",
    "parse_device",
    "parse_dtype",
    "resolve_patches",
]

PatchSource: TypeAlias = str | os.PathLike[str] | PatchFile | AppliedPatch

WEIGHTS_FILE = "weights.safetensors"
_DTYPES = ("float32", "float16", "bfloat16", "float64")


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
    torch_dtype = parse_dtype(dtype)
    torch_device = parse_device(device)
    path = resolve_model_path(os.fspath(model))
    fingerprint = fingerprint_model(path)
    applied = resolve_patches(patches, fingerprint)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ppatch.runtime.model_source import model_source

    source = model_source(path)
    # GGUF's quantized types have no torch dtype: "auto" would keep nothing; float32 is exact.
    default_dtype: Any = "float32" if source.is_gguf else "auto"
    hf_model = AutoModelForCausalLM.from_pretrained(
        source.folder,
        local_files_only=True,
        dtype=torch_dtype if torch_dtype is not None else default_dtype,
        **source.arguments,
    )
    hf_model = cast(Any, hf_model).to(torch_device).eval()
    tokenizer = AutoTokenizer.from_pretrained(
        source.folder, local_files_only=True, **source.arguments
    )
    return PatchedModel(hf_model, applied, tokenizer=tokenizer)


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
            path = _installed_path_for_spec(source, fingerprint)
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


def _checked(patch: PatchFile, fingerprint: str, *, source: str) -> AppliedPatch:
    check_fingerprint(patch.manifest, fingerprint)
    return applied_from_patch_file(patch, source=source)


def _looks_like_a_path(source: object) -> bool:
    if not isinstance(source, str):
        return False
    # Specs contain "/" too (`acme/toxicity`), so only the suffix or an existing file decide.
    return source.endswith(".ppatch") or Path(source).is_file()


def _installed_path_for_spec(text: str, fingerprint: str) -> Path:
    """The installed file that `[namespace/]name[@range]` names for this model."""
    spec = PackageSpec.parse(text)
    installed = read_installed(fingerprint).patches
    named = [
        patch
        for patch in installed
        if patch.name == spec.full_name
        or (spec.namespace is None and patch.name.partition("/")[2] == spec.name)
    ]
    matching = [
        patch
        for patch in named
        if spec.range.contains(parse_version(patch.version), include_prerelease=True)
    ]
    if not matching:
        listing = ", ".join(f"{patch.name} {patch.version}" for patch in installed) or "none"
        found = f" (installed: {listing})"
        raise NotFoundError(
            f"no installed patch matches {text!r} for model {fingerprint}{found}; "
            "install it with 'ppatch install' or give a .ppatch path"
        )
    if len(matching) > 1:
        names = ", ".join(f"{patch.name} {patch.version}" for patch in matching)
        raise UsageError(f"{text!r} matches several installed patches ({names}): add the namespace")
    path: Path = blob_path(matching[0].sha256)
    if not path.is_file():
        raise NotFoundError(
            f"{matching[0].name} {matching[0].version} is installed but its file {str(path)!r} "
            "is missing; reinstall it with 'ppatch install'"
        )
    return path


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
    return fingerprint_model(resolve_model_path(origin))
