"""SDPA that keeps grouped-query attention under an explicit mask, for calls that carry a prefix.

With the virtual tokens' keys in front of the prompt, attention always needs an explicit mask
(SDPA's `is_causal` anchors its diagonal top-left). Transformers' SDPA function passes
`enable_gqa` to torch only when there is no mask; with one, it first copies every key/value head
once per query head that shares it (`repeat_kv`). On CPU that copy was the largest single cost
ppatch added to a prefill, more than the attention itself (benchmarks/apply.py; the figures are
in docs/apply.md). Torch's CPU kernel takes a
mask and grouped heads together, exactly (it reads each key/value head for its whole group), so
on CPU this function passes both. Everywhere else (CUDA, where a mask sends `enable_gqa` to the
slow math kernel; single-token decoding steps, which transformers already packs; position
biases, soft-capping) it hands the call to transformers' own SDPA function unchanged.

It is registered with transformers' `AttentionInterface` under `ATTENTION_NAME`, with SDPA's mask
function, and `grouped_attention_for(model)` switches an SDPA model to it for the duration of one
patched call, then back: the user's model is left as it was. A bare call on the same model in
another thread during that time runs through this function too and gets the same result, since
it computes what SDPA computes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["ATTENTION_NAME", "grouped_attention_for", "grouped_sdpa_attention", "uses_sdpa"]

ATTENTION_NAME = "ppatch_grouped_sdpa"

# Keyword arguments that change what SDPA computes; calls carrying them go to transformers as-is.
_DELEGATED_ARGUMENTS = ("position_bias", "softcap", "s_aux", "sinks")

_registered = False
_switch_lock = threading.Lock()
# id(config) -> (patched calls now running on it, the implementation to restore after the last).
_active: dict[int, tuple[int, str]] = {}


def grouped_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Transformers' SDPA attention, with grouped heads kept under a mask on CPU."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    if (
        groups == 1
        or attention_mask is None
        or query.device.type != "cpu"
        or query.shape[2] == 1
        or key.shape[-1] != value.shape[-1]
        or kwargs.get("output_attentions", False)
        or any(kwargs.get(name) is not None for name in _DELEGATED_ARGUMENTS)
    ):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    # The mask says everything about causality here, as in transformers when a mask is given.
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )
    return output.transpose(1, 2).contiguous(), None


def uses_sdpa(config: Any) -> bool:
    """Whether a model with `config` runs SDPA: transformers' own, or this function for it."""
    return getattr(config, "_attn_implementation", None) in ("sdpa", ATTENTION_NAME)


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, grouped_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    _registered = True


@contextmanager
def grouped_attention_for(model: Any) -> Iterator[None]:
    """Run `model` with `grouped_sdpa_attention` inside this block when it uses SDPA.

    Nested and concurrent blocks on one model are counted; the last one out restores the
    implementation the model had. Models on another implementation are left alone.
    """
    config = model.config
    if not uses_sdpa(config):
        yield
        return
    with _switch_lock:
        _register()
        running, original = _active.get(id(config), (0, config._attn_implementation))
        _active[id(config)] = (running + 1, original)
        # The internal attribute, as `set_attn_implementation` writes it: the public setter
        # would also rewrite sub-configs, which belong to the model's other parts.
        config._attn_implementation_internal = ATTENTION_NAME
    try:
        yield
    finally:
        with _switch_lock:
            running, original = _active.pop(id(config))
            if running > 1:
                _active[id(config)] = (running - 1, original)
            elif config._attn_implementation_internal == ATTENTION_NAME:
                config._attn_implementation_internal = original
