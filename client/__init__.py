"""ppatch: safety patches for language models, installed and applied like software fixes.

The model-facing API (`load_model`, `apply`) imports torch only when called, so importing
`ppatch` stays cheap for registry-facing tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# `ppatch.apply` names both the sub-package and the function users call. Importing the (light)
# sub-package first and binding the function afterwards keeps `ppatch.apply(model, patches)`
# callable: a later `import ppatch.apply.loading` finds the sub-package in `sys.modules` and
# leaves this module's attribute alone. Import the sub-package's modules by their full names.
import ppatch.apply as _apply_package  # noqa: F401

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ppatch.apply.loading import PatchSource
    from ppatch.apply.patched_model import PatchedModel

__version__ = "0.1.0"

__all__ = ["__version__", "apply", "load_model"]


def load_model(
    model: str | Any,
    patches: Sequence[PatchSource] | None = None,
    **options: Any,
) -> PatchedModel:
    """Load a local causal LM and its tokenizer, run with its installed patches.

    See `ppatch.apply.loading.load_model` for the options (`device`, `dtype`, ...).
    """
    from ppatch.apply.loading import load_model as load

    return load(model, patches, **options)


def apply(model: Any, patches: Sequence[PatchSource] | None = None, **options: Any) -> PatchedModel:
    """Run an already loaded model with patches; see `ppatch.apply.loading.apply`."""
    from ppatch.apply.loading import apply as apply_patches

    return apply_patches(model, patches, **options)
