"""A frozen causal LM that runs with patches' virtual tokens in front of every input.

Semantics are PEFT prompt tuning's: the composed virtual tokens come first, before BOS and any
chat template, at positions 0..n-1 with an attention mask of ones, and the caller's tokens follow.
The result equals running the model on `cat([prompt_embeddings, embed(input_ids)])` with the
mask extended by n ones (tests/client/runtime/test_patched_model.py), but the virtual tokens are
never recomputed: every call starts from the shared prefix cache (`ppatch.runtime.prefix`).

Outputs cover the caller's tokens only: `logits` has the prompt's length, `generate` returns the
caller's input ids followed by the new tokens, exactly as the bare model's `generate` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ppatch.errors import UsageError
from ppatch.runtime.attention import grouped_attention_for, uses_sdpa
from ppatch.runtime.compat import cache_keyword, without_cache
from ppatch.runtime.prefix import PrefixKV, PrefixStore, default_prefix_store, embedding_width
from ppatch.runtime.support import Architecture, architecture_of

if TYPE_CHECKING:
    import numpy
    import torch
    from transformers import PreTrainedModel

__all__ = ["AppliedPatch", "PatchedModel"]

# Arguments that would fight the prefix for the cache: the prefix must be the cache's start.
_CACHE_ARGUMENTS = ("cache", "past_key_values")


@dataclass(frozen=True, eq=False)
class AppliedPatch:
    """One patch as applied: where it came from and its `[num_virtual_tokens, hidden]` weights.

    `weights_sha256` identifies the embeddings (the manifest's digest of `weights.safetensors`,
    or a digest of the array for patches made in memory); the prefix cache is keyed by it.
    """

    name: str
    version: str
    weights_sha256: str
    embeddings: numpy.ndarray
    source: str = ""

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.embeddings.shape[0])

    @classmethod
    def from_array(
        cls, embeddings: numpy.ndarray, *, name: str = "in-memory", version: str = "0.0.0"
    ) -> AppliedPatch:
        """A patch made from an array (training, tests): identified by the array's bytes."""
        import hashlib

        import numpy as np

        array = np.ascontiguousarray(embeddings, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise UsageError(
                f"prompt embeddings must have shape [num_virtual_tokens, hidden_size] with both "
                f"at least 1, got {array.shape!r}"
            )
        digest = hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()
        return cls(name=name, version=version, weights_sha256=digest, embeddings=array)


class PatchedModel:
    """A Hugging Face causal LM and its tokenizer, run with `patches` in front of every input.

    `patches` apply in the order given (their embeddings are concatenated in that order). With no
    patches every call goes straight to the bare model. With patches, a model whose architecture
    or attention implementation ppatch has not verified is refused here
    (`ppatch.runtime.support.UnsupportedModelError`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        patches: Sequence[AppliedPatch] = (),
        *,
        tokenizer: Any = None,
        prefix_store: PrefixStore | None = None,
    ) -> None:
        if patches:
            architecture_of(model)
        hidden = embedding_width(model)
        for patch in patches:
            if int(patch.embeddings.shape[1]) != hidden:
                raise UsageError(
                    f"patch {patch.name!r} {patch.version} has hidden size "
                    f"{int(patch.embeddings.shape[1])} but the model's is {hidden}"
                )
        self.model = model
        self.tokenizer = tokenizer
        self.patches: tuple[AppliedPatch, ...] = tuple(patches)
        self._store = prefix_store if prefix_store is not None else default_prefix_store()

    def __repr__(self) -> str:
        names = ", ".join(f"{patch.name}@{patch.version}" for patch in self.patches) or "none"
        return f"PatchedModel({type(self.model).__name__}, patches=[{names}])"

    @property
    def num_virtual_tokens(self) -> int:
        return sum(patch.num_virtual_tokens for patch in self.patches)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def prompt_embeddings(self) -> torch.Tensor:
        """The composed virtual tokens, `[num_virtual_tokens, hidden]`, in the model's dtype."""
        import numpy as np
        import torch

        if not self.patches:
            raise UsageError("no patches are applied, so there are no prompt embeddings")
        composed = np.concatenate([patch.embeddings for patch in self.patches], axis=0)
        return torch.from_numpy(composed).to(device=self.model.device, dtype=self.model.dtype)

    def prefix(self) -> PrefixKV:
        """The virtual tokens' cache for the model's current dtype and device (computed once)."""
        patch_set = tuple(patch.weights_sha256 for patch in self.patches)
        return self._store.get(self.model, patch_set, self.prompt_embeddings)

    def __call__(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The model's forward pass over the caller's tokens, after the virtual tokens.

        Returns the model's output for the caller's positions; `loss` (with `labels`) counts
        every label, the first one predicted from the last virtual token, as PEFT does.
        """
        if not self.patches:
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                labels=labels,
                **kwargs,
            )
        _refuse_cache_arguments(kwargs, "forward")
        # The virtual tokens live in the cache, so the model always gets one; `use_cache` says
        # whether the output carries it (as for the bare model), and so whether it is kept.
        use_cache = kwargs.pop("use_cache", None)
        if use_cache is None:
            use_cache = bool(getattr(self.model.config, "use_cache", True))
        import torch

        architecture = architecture_of(self.model)
        prefix = self.prefix()
        batch_size, length = _batch_shape(input_ids, inputs_embeds)
        virtual = prefix.num_virtual_tokens
        mask = _full_attention_mask(attention_mask, batch_size, length, virtual, self.model.device)
        if architecture.prepared_mask and _takes_a_prepared_mask(self.model.config):
            mask = _additive_sdpa_mask(mask, length, virtual, self.model.dtype)
        if position_ids is not None:
            position_ids = position_ids + virtual
        cache = prefix.cache_for_batch(
            batch_size, self.model.config, "exact" if use_cache else "transient"
        )
        with _attention_for(self.model, architecture):
            output = self.model(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_keyword(self.model): cache},
                **kwargs,
            )
        if not use_cache:
            # As the bare model's output without a cache: the field absent, not None.
            output = without_cache(output)
        if labels is not None:
            # Logits at position i predict token i+1; the first label is predicted by the last
            # virtual token, whose logits the prefix kept.
            first = prefix.next_token_logits.expand(batch_size, 1, -1).to(output.logits.device)
            predicting = torch.cat([first, output.logits[:, :-1, :]], dim=1).float()
            # Item assignment keeps the ModelOutput's mapping and attribute views in step.
            output["loss"] = torch.nn.functional.cross_entropy(
                predicting.reshape(-1, predicting.shape[-1]),
                labels.to(predicting.device).reshape(-1),
                ignore_index=-100,
            )
        return output

    forward = __call__

    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Hugging Face `generate`, starting from the virtual tokens' cache.

        Same signature as the model's `generate` (`inputs` or `input_ids`, `attention_mask`,
        `inputs_embeds`, `generation_config` and every generation option), except a cache of
        its own. Returns what it returns: the caller's `input_ids` followed by the new tokens
        (only the new tokens when the input is `inputs_embeds`). Pad left for batches of
        different lengths.
        """
        if generation_config is not None:
            kwargs["generation_config"] = generation_config
        if not self.patches:
            return cast(Any, self.model).generate(inputs, **kwargs)
        _refuse_cache_arguments(kwargs, "generate")
        if kwargs.get("use_cache") is False:
            raise UsageError(
                "use_cache=False cannot be combined with patches: the patches' virtual tokens "
                "are served from the cache"
            )
        import torch

        architecture = architecture_of(self.model)
        input_ids: torch.Tensor | None = kwargs.pop("input_ids", None)
        if inputs is not None:
            if input_ids is not None:
                raise UsageError("give the prompt once, as inputs or as input_ids, not both")
            input_ids = inputs
        attention_mask: torch.Tensor | None = kwargs.pop("attention_mask", None)
        inputs_embeds: torch.Tensor | None = kwargs.pop("inputs_embeds", None)
        if input_ids is None and inputs_embeds is None:
            raise UsageError("generate needs input_ids or inputs_embeds (the prompt)")
        prefix = self.prefix()
        batch_size, length = _batch_shape(input_ids, inputs_embeds)
        virtual = prefix.num_virtual_tokens
        device = self.model.device
        if attention_mask is None and input_ids is not None:
            attention_mask = self._mask_from_padding(input_ids)
        kwargs["attention_mask"] = _full_attention_mask(
            attention_mask, batch_size, length, virtual, device
        )
        position_ids = kwargs.get("position_ids")
        if position_ids is not None:
            virtual_positions = torch.arange(virtual, device=position_ids.device)
            kwargs["position_ids"] = torch.cat(
                [virtual_positions.expand(batch_size, -1), position_ids + virtual], dim=1
            )
        if inputs_embeds is not None:
            # `generate` treats inputs_embeds as the whole sequence and feeds only the part the
            # cache does not hold, so the virtual tokens are written in front and skipped.
            virtual_embeddings = self.prompt_embeddings().to(inputs_embeds.dtype)
            kwargs["inputs_embeds"] = torch.cat(
                [virtual_embeddings.expand(batch_size, -1, -1), inputs_embeds], dim=1
            )
        self._use_the_prefix_cache(kwargs)
        rows = batch_size * self._rows_per_input(kwargs)
        cache = prefix.cache_for_batch(rows, self.model.config, "growing")
        with _attention_for(self.model, architecture):
            kwargs[cache_keyword(self.model)] = cache
            return cast(Any, self.model).generate(input_ids=input_ids, **kwargs)

    def complete(
        self,
        prompts: str | Sequence[str],
        *,
        max_new_tokens: int = 32,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Tokenize `prompts`, generate, and decode only the new text of each."""
        tokenizer = self._require_tokenizer()
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            return []
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
        input_ids = encoded["input_ids"].to(self.model.device)
        attention_mask = encoded["attention_mask"].to(self.model.device)
        generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        sequences = self.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            **generate_kwargs,
        )
        new_tokens = sequences[:, input_ids.shape[1] :]
        return [str(text) for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise UsageError(
                "this PatchedModel has no tokenizer: pass tokenizer= to ppatch.apply, "
                "or call generate with input_ids"
            )
        return self.tokenizer

    def _mask_from_padding(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The mask `generate` would infer: pad tokens off, when pad differs from EOS."""
        config = self.model.generation_config
        pad, eos = config.pad_token_id, config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if pad is None or pad in eos_ids or not bool((input_ids == pad).any()):
            return input_ids.new_ones(input_ids.shape)
        mask: torch.Tensor = (input_ids != pad).long()
        return mask

    def _use_the_prefix_cache(self, kwargs: dict[str, Any]) -> None:
        """Make sure `generate` takes the prefix cache rather than building its own kind."""
        config = kwargs.get("generation_config")
        asked = kwargs.get("cache_implementation") or getattr(config, "cache_implementation", None)
        if asked not in (None, "dynamic", "hybrid"):
            raise UsageError(
                f"cache_implementation={asked!r} cannot be combined with patches: the patches' "
                "virtual tokens are served from a dynamic cache"
            )
        if config is None and self.model.generation_config.cache_implementation is not None:
            # The model's default (e.g. "static") would clash with the cache given to generate.
            kwargs["cache_implementation"] = None
        elif kwargs.get("cache_implementation") is not None:
            kwargs["cache_implementation"] = None

    def _rows_per_input(self, kwargs: dict[str, Any]) -> int:
        """How many rows `generate` makes of each input (beams, returned sequences)."""
        config = kwargs.get("generation_config")
        if config is None:
            config = self.model.generation_config
        beams = kwargs.get("num_beams", getattr(config, "num_beams", 1)) or 1
        returned = kwargs.get("num_return_sequences", getattr(config, "num_return_sequences", 1))
        return max(int(beams), int(returned or 1))


def _attention_for(model: Any, architecture: Architecture) -> AbstractContextManager[None]:
    """The grouped-SDPA switch where the architecture matrix proves it right, else nothing."""
    return grouped_attention_for(model) if architecture.grouped_sdpa else nullcontext()


def _refuse_cache_arguments(kwargs: dict[str, Any], where: str) -> None:
    """Refuse a cache of the caller's; drop `None` ones, since the call gets ppatch's own."""
    for name in _CACHE_ARGUMENTS:
        if kwargs.pop(name, None) is not None:
            raise UsageError(
                f"{where} with patches does not accept {name}=: the cache starts with the "
                "patches' virtual tokens and is built for each call"
            )


def _batch_shape(
    input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
) -> tuple[int, int]:
    source = input_ids if input_ids is not None else inputs_embeds
    if source is None:
        raise UsageError("the model needs input_ids or inputs_embeds")
    if source.ndim < 2:
        raise UsageError(
            f"inputs must be batched ([batch, length]), got shape {tuple(source.shape)!r}"
        )
    return int(source.shape[0]), int(source.shape[1])


def _full_attention_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    length: int,
    virtual: int,
    device: torch.device,
) -> torch.Tensor:
    """The caller's mask with the virtual tokens' ones in front."""
    import torch

    if attention_mask is None:
        attention_mask = torch.ones(batch_size, length, dtype=torch.long, device=device)
    if attention_mask.ndim != 2:
        raise UsageError(
            f"attention_mask must be 2-D [batch, length], got shape {tuple(attention_mask.shape)!r}"
        )
    ones = attention_mask.new_ones(attention_mask.shape[0], virtual)
    return torch.cat([ones, attention_mask], dim=1)


def _takes_a_prepared_mask(config: Any) -> bool:
    """Whether the forward pass may get a ready 4-D mask instead of the 2-D one.

    With a cache in front of the prompt, transformers cannot use SDPA's `is_causal` and builds a
    boolean `[batch, 1, length, virtual + length]` mask that SDPA then converts to an additive
    one in every layer. A float mask made once, with batch 1 when nothing is padded, skips both
    (benchmarks/apply.py; the figures are in docs/apply.md). Only for SDPA and layers
    that all attend to everything before them: sliding windows, chunks, flash-attention and
    eager kernels want transformers' own masks.
    """
    if not uses_sdpa(config):
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None):
        return False
    layer_types = getattr(config, "layer_types", None) or ("full_attention",)
    return all(kind == "full_attention" for kind in layer_types)


def _additive_sdpa_mask(
    full_mask: torch.Tensor, length: int, virtual: int, dtype: torch.dtype
) -> torch.Tensor:
    """`[batch or 1, 1, length, virtual + length]`: 0 where a query may look, the minimum elsewhere.

    Query i (position virtual + i) sees every virtual token and the caller's keys up to i that
    `full_mask` (`[batch, virtual + length]`, the virtual tokens' ones first) keeps: exactly the
    mask transformers would build from `full_mask`.
    """
    import torch

    device = full_mask.device
    queries = torch.arange(length, device=device)[:, None] + virtual
    allowed = (queries >= torch.arange(virtual + length, device=device)[None, :])[None, None]
    if not bool(full_mask.all()):
        allowed = allowed & full_mask[:, None, None, :].bool()
    additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return additive.masked_fill_(~allowed, torch.finfo(dtype).min)
