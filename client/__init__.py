"""ppatch: safety patches for language models, installed and applied like software fixes.

The model-facing API (`load_model`, `apply`) imports torch only when called, so importing
`ppatch` stays cheap for registry-facing tools.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from ppatch.runtime.loading import PatchSource
    from ppatch.runtime.patched_model import PatchedModel

__version__ = "0.1.0"

__all__ = ["__version__", "apply", "load_model"]


def load_model(
    model: str | os.PathLike[str],
    patches: Sequence[PatchSource] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> PatchedModel:
    """Load a local causal LM and its tokenizer, run with its installed patches.

    `patches=None` applies the installed patches in installation order, a list exactly those
    (`.ppatch` paths or installed specs such as `acme/toxicity@1.2`), `[]` none. See
    `ppatch.runtime.loading.load_model`.
    """
    from ppatch.runtime.loading import load_model as load

    return load(model, patches, device=device, dtype=dtype)


def apply(
    model: Any,
    patches: Sequence[PatchSource] | None = None,
    *,
    tokenizer: Any = None,
    fingerprint: str | None = None,
) -> PatchedModel:
    """Run a model the caller already loaded with patches; see `ppatch.runtime.loading.apply`."""
    from ppatch.runtime.loading import apply as apply_patches

    return apply_patches(model, patches, tokenizer=tokenizer, fingerprint=fingerprint)
