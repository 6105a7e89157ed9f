"""The key/value cache of a patch's virtual tokens, computed once and shared by every request.

A prompt-tuning patch is a block of virtual-token embeddings placed before the user's tokens.
Causal attention means those positions never see what follows them, so their keys and values
are the same for every prompt: the model runs over them once (`compute_prefix`) and each request
starts from that cache. `PrefixStore` keeps one prefix per (model, patch set, dtype, device).

Sharing rather than copying: `PrefixKV.cache_for_batch` builds a fresh `DynamicCache` whose layers
point at the stored tensors, widened to the batch with `expand` views (no memory). What a plain
layer does with the first keys it gets depends on the call (`CacheLayout`):

- "growing" (`generate`): the layer becomes a growing layer (`_define_growing_layer`). The first
  `update` copies the prefix and the prompt's keys into buffers of their own with room to spare,
  and later tokens are written into that room, where `DynamicLayer` concatenates (copying the
  whole cache, prefix included) on every decoding step.
- "exact" (a forward pass that returns its cache): `DynamicLayer`'s update, which concatenates
  once, into a tensor of exactly the size needed. Spare room nobody will use would only be more
  memory held until the caller drops the output, and more page faults per forward pass
  (benchmarks/apply.py; the figures are in docs/apply.md).
- "transient" (a forward pass with `use_cache=False`): the layer hands attention the prefix and
  the new keys and keeps nothing, so each layer's keys are freed as soon as it is done with them.

The stored tensors are never written. Sliding-window layers are replaced by full ones
(`full_attention_cache`): the window is the mask's business, and a prefix at least a window long
would otherwise lose keys and shift positions.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ppatch.runtime.compat import cache_keyword, output_cache

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache, PreTrainedModel

__all__ = [
    "CacheLayout",
    "PrefixKV",
    "PrefixStore",
    "compute_prefix",
    "default_prefix_store",
    "embedding_width",
    "full_attention_cache",
    "grown_buffers",
]


# How a request's cache holds the keys after the prefix: see the module docstring.
CacheLayout = Literal["growing", "exact", "transient"]


@dataclass(frozen=True, eq=False)
class PrefixKV:
    """Keys and values of the virtual tokens, one `(keys, values)` pair per decoder layer.

    Tensors have batch size 1: `[1, kv_heads, num_virtual_tokens, head_dim]`.
    `next_token_logits` (`[1, vocab]`) are the logits after the last virtual token: what the
    model predicts for the first real token, needed for a loss over the whole prompt.
    """

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    num_virtual_tokens: int
    next_token_logits: torch.Tensor

    def cache_for_batch(
        self, batch_size: int, config: Any, layout: CacheLayout = "growing"
    ) -> DynamicCache:
        """A new cache for `batch_size` rows that starts with the virtual tokens.

        The returned cache is the caller's to grow; the stored tensors stay untouched.
        `layout` says how plain layers hold what follows the prefix (module docstring).
        """
        defines = {
            "growing": _define_growing_layer,
            "exact": _define_exact_layer,
            "transient": _define_transient_layer,
        }
        layer_class = _layer_class(defines[layout])
        cache = full_attention_cache(config)
        if len(cache.layers) != len(self.layers):
            raise ValueError(
                f"the model's cache has {len(cache.layers)} layers but the prefix has "
                f"{len(self.layers)}: the prefix was computed for another model"
            )
        for index, (keys, values) in enumerate(self.layers):
            wide_keys = keys.expand(batch_size, -1, -1, -1)
            wide_values = values.expand(batch_size, -1, -1, -1)
            layer = cache.layers[index] = layer_class()
            layer.lazy_initialization(wide_keys, wide_values)
            layer.keys = wide_keys
            layer.values = wide_values
        return cache


# Room a growing buffer keeps beyond what it holds: half as much again, at least this many tokens.
# Generation appends one token per step, so a buffer reallocates O(log n) times, not n times.
_MIN_SPARE_TOKENS = 32

_DEFINED_LAYERS: dict[Callable[[], type], type] = {}


def _layer_class(define: Callable[[], type]) -> type:
    """The class `define` makes, made on first use: importing this module must not import torch."""
    layer_class = _DEFINED_LAYERS.get(define)
    if layer_class is None:
        layer_class = _DEFINED_LAYERS[define] = define()
    return layer_class


def _define_exact_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    class ExactLayer(DynamicLayer):  # type: ignore[no-untyped-call]
        """`DynamicLayer`, which concatenates once per update, with a reset that never writes."""

        def reset(self) -> None:
            _drop_tensors(self)

    return ExactLayer


def _drop_tensors(layer: Any) -> None:
    """Empty `layer` by dropping its tensors, never by zeroing them.

    Until its first update a layer's tensors are views of the shared prefix; transformers before
    5.24 resets a `DynamicLayer` by zeroing its tensors in place, which would write into the
    prefix every request starts from.
    """
    layer.keys = layer.values = None
    layer.is_initialized = False


def _define_growing_layer() -> type:
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
        """A `DynamicLayer` that appends into spare room instead of concatenating every step.

        `keys` and `values` are views of the first `length` positions of buffers with room to
        spare; `update` writes new tokens after them and widens the views. Whatever replaces
        `keys` (beam reordering, batch selection, a reset) leaves them no longer views of the
        buffers, and the next `update` starts new buffers from them: `DynamicLayer`'s behaviour,
        one copy later. Cropping keeps the views, so the next tokens overwrite what was cropped.
        """

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._key_buffer: torch.Tensor | None = None
            self._value_buffer: torch.Tensor | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            if torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad):
                # Autograd may have saved the views for a backward pass; writing into their
                # buffers would invalidate them. Concatenate, as `DynamicLayer` does.
                self._key_buffer = self._value_buffer = None
                return super().update(key_states, value_states, *args, **kwargs)
            held = 0 if self.keys is None or self.keys.numel() == 0 else int(self.keys.shape[-2])
            length = held + key_states.shape[-2]
            if not self._buffers_hold_the_cache(length):
                self._start_buffers(held, length, key_states, value_states)
            assert self._key_buffer is not None and self._value_buffer is not None
            self._key_buffer[:, :, held:length].copy_(key_states)
            self._value_buffer[:, :, held:length].copy_(value_states)
            self.keys = self._key_buffer[:, :, :length]
            self.values = self._value_buffer[:, :, :length]
            return self.keys, self.values

        def reset(self) -> None:
            _drop_tensors(self)
            self._key_buffer = self._value_buffer = None

        def _buffers_hold_the_cache(self, length: int) -> bool:
            """Whether `keys`/`values` still view the buffers and `length` tokens fit."""
            for view, buffer in ((self.keys, self._key_buffer), (self.values, self._value_buffer)):
                if (
                    buffer is None
                    or view is None
                    or view.numel() == 0
                    or view.data_ptr() != buffer.data_ptr()
                    or view.stride() != buffer.stride()
                    or view.shape[:2] != buffer.shape[:2]
                    or view.shape[-1] != buffer.shape[-1]
                    or view.dtype != buffer.dtype
                    or length > buffer.shape[-2]
                ):
                    return False
            return True

        def _start_buffers(
            self,
            held: int,
            length: int,
            key_states: torch.Tensor,
            value_states: torch.Tensor,
        ) -> None:
            self._key_buffer, self._value_buffer = grown_buffers(
                (self.keys, self.values),
                (key_states, value_states),
                held=held,
                length=length,
                spare=_MIN_SPARE_TOKENS,
            )

    return GrowingLayer


def grown_buffers(
    held_states: tuple[torch.Tensor | None, torch.Tensor | None],
    new_states: tuple[torch.Tensor, torch.Tensor],
    *,
    held: int,
    length: int,
    spare: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key and value buffers with room for `length` columns and spare (half as many again, at
    least `spare`), shaped and typed like `new_states`, their first `held` columns copied from
    `held_states`. A cache layer that appends into them reallocates only when they are full."""
    import torch

    capacity = length + max(length // 2, spare)
    buffers = []
    for old, new in zip(held_states, new_states, strict=True):
        shape = (new.shape[0], new.shape[1], capacity, new.shape[-1])
        buffer = torch.empty(shape, dtype=new.dtype, device=new.device)
        if held and old is not None:
            buffer[:, :, :held].copy_(old)
        buffers.append(buffer)
    return buffers[0], buffers[1]


def _define_transient_layer() -> type:
    import torch
    from transformers.cache_utils import DynamicLayer

    class TransientLayer(DynamicLayer):  # type: ignore[no-untyped-call]
        """A layer that holds only the prefix: one forward pass, nothing kept afterwards.

        `update` returns the prefix followed by the new keys and stores nothing, so the cache
        keeps reporting the prefix's length and the keys go as soon as attention is done.
        """

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            assert self.keys is not None and self.values is not None
            return (
                torch.cat([self.keys, key_states], dim=-2),
                torch.cat([self.values, value_states], dim=-2),
            )

    return TransientLayer


def compute_prefix(model: PreTrainedModel, embeddings: torch.Tensor) -> PrefixKV:
    """Run `model` over `embeddings` (`[num_virtual_tokens, hidden]`) and keep their cache.

    The virtual tokens sit at positions 0..n-1 with nothing masked, exactly as in the plain
    concatenation `cat([embeddings, embed(input_ids)])`.
    """
    import torch

    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"prompt embeddings must have shape [num_virtual_tokens >= 1, hidden], "
            f"got {tuple(embeddings.shape)!r}"
        )
    hidden = embedding_width(model)
    if embeddings.shape[1] != hidden:
        raise ValueError(
            f"prompt embeddings have hidden size {embeddings.shape[1]} but the model's is {hidden}"
        )
    # Plain tensors even when the first caller runs under inference_mode: the prefix outlives
    # that call and may later meet autograd-enabled code.
    with torch.inference_mode(False), torch.no_grad():
        embeddings = embeddings.clone()
        cache = full_attention_cache(model.config)
        output = model(
            inputs_embeds=embeddings.unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
            **{cache_keyword(model): cache},
        )
    layers = tuple((layer.keys, layer.values) for layer in output_cache(output).layers)
    for keys, values in layers:
        # Nobody may write through these: they back every request's cache.
        keys.requires_grad_(False)
        values.requires_grad_(False)
    return PrefixKV(
        layers=layers,
        num_virtual_tokens=int(embeddings.shape[0]),
        next_token_logits=output.logits[:, -1, :].detach(),
    )


def full_attention_cache(config: Any) -> DynamicCache:
    """A `DynamicCache` for `config` whose layers all keep every key, sliding-window ones included.

    A sliding-window layer keeps only its last `window - 1` keys and counts its length from what
    it was given; a prefix at least a window long would lose keys that later queries' windows
    still reach during the prompt, and shift the positions the mask is built from. Kept whole,
    the keys are the concatenation's, and the window lives in the mask, which transformers
    builds from absolute positions for sliding layers whatever the cache keeps. That costs the
    memory a sliding cache would save: `window` keys per layer become all of them.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    cache = DynamicCache(config=config)
    for index, layer in enumerate(cache.layers):
        if type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer):
            raise ValueError(
                f"the model's cache layer {type(layer).__name__} is not a key/value layer, "
                "so a prompt-tuning prefix cannot be cached for it"
            )
        cache.layers[index] = DynamicLayer()  # type: ignore[no-untyped-call]
    return cache


def embedding_width(model: PreTrainedModel) -> int:
    """The model's hidden size as its input embeddings see it."""
    import torch

    # Not every embedding module is a lookup table with a `weight` (a computed embedding has
    # none): say so, rather than fail on a missing attribute.
    weight = getattr(model.get_input_embeddings(), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(model).__name__} has no input embedding matrix")
    return int(weight.shape[-1])


class PrefixStore:
    """Prefixes keyed by model (held weakly), patch set, dtype and device.

    A model that is garbage-collected takes its prefixes with it. A model whose weights change
    in place keeps stale prefixes: call `clear(model)` after changing them.
    """

    def __init__(self) -> None:
        self._by_model: weakref.WeakKeyDictionary[Any, dict[Hashable, PrefixKV]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(
        self,
        model: PreTrainedModel,
        patch_set: Hashable,
        build_embeddings: Callable[[], torch.Tensor],
    ) -> PrefixKV:
        """The prefix of `patch_set` on `model` as it is now (its dtype and device).

        `build_embeddings` is called only when the prefix is not stored yet; it returns the
        composed embeddings already in the model's dtype and on its device.
        """
        key = (patch_set, str(model.dtype), str(model.device))
        with self._lock:
            stored = self._by_model.setdefault(model, {})
            prefix = stored.get(key)
            if prefix is None:
                prefix = compute_prefix(model, build_embeddings())
                stored[key] = prefix
            return prefix

    def clear(self, model: PreTrainedModel | None = None) -> None:
        """Forget the prefixes of `model`, or of every model."""
        with self._lock:
            if model is None:
                self._by_model.clear()
            else:
                self._by_model.pop(model, None)


_DEFAULT_STORE = PrefixStore()


def default_prefix_store() -> PrefixStore:
    """The process-wide store that `PatchedModel` uses unless given another."""
    return _DEFAULT_STORE
