"""One patch set's running batch: rows join at any step and leave as soon as they end.

The batch holds one key/value cache for all its rows, left-aligned so that every row's newest
token sits in the last column. Each row's cache starts with the patch set's virtual tokens
(`PatchedModel.prefix()`, shared by every request and never recomputed), then its prompt, then
what it generated. Columns a row does not use (when rows of different lengths share the cache)
are zeros that its attention mask hides; position ids count only a row's own tokens, so a row
sees exactly the positions and keys it would see alone.

`admit` runs the new rows' prompts in one forward pass from the prefix cache (left-padded among
themselves), takes their first tokens, and widens the batch's cache to hold them; `step` runs
one forward pass of one token per row. Each row chooses its token with its own sampling
parameters (`ppatch.serve.sampling`). Rows that end (EOS, stop sequence, `max_tokens`, a
cancelled request) are dropped from the cache at once, with the columns nobody uses any more.

This needs a cache made only of plain `DynamicLayer`s (full attention everywhere), whose keys
can be padded, joined and selected by row; `supports_running_batches` says whether a model has
one, and the engine runs other models one request at a time through `generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from ppatch.runtime.attention import grouped_attention_for
from ppatch.runtime.compat import cache_keyword
from ppatch.runtime.prefix import grown_buffers
from ppatch.serve.jobs import Job, Row, eos_ids_of
from ppatch.serve.sampling import Sampling, choose_tokens, generator_for

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

    from ppatch.runtime.patched_model import PatchedModel

__all__ = ["RunningBatch", "supports_running_batches"]


def supports_running_batches(model: Any) -> bool:
    """Whether every layer of the model's cache is a plain `DynamicLayer` (full attention)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=model.config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class RunningBatch:
    """The rows of one served patch set, decoded together one token per step."""

    def __init__(self, patched: PatchedModel) -> None:
        self.patched = patched
        self.rows: list[Row] = []
        self._samplings: list[Sampling] = []
        self._generators: list[torch.Generator | None] = []
        self._eos_ids = eos_ids_of(patched.model, patched.tokenizer)
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, columns]: 1 where a row has a token
        self._positions: torch.Tensor | None = None  # [rows]: the next token's position id
        self._last: torch.Tensor | None = None  # [rows]: the newest token, not yet in the cache

    @property
    def size(self) -> int:
        return len(self.rows)

    def jobs(self) -> list[Job]:
        """The jobs with rows still running, in order of arrival."""
        return list({id(row.job): row.job for row in self.rows}.values())

    def admit(self, jobs: Sequence[Job]) -> int:
        """Prefill every choice of `jobs`, take their first tokens and join them; tokens made."""
        import torch
        from transformers import DynamicCache

        patched, model = self.patched, self.patched.model
        tokenizer, device = patched.tokenizer, model.device
        choices = [(job, index) for job in jobs for index in range(len(job.prompts))]
        rows = [Row(job, index, tokenizer, self._eos_ids) for job, index in choices]
        prompts = [list(job.prompts[index]) for job, index in choices]
        # One generator per request: its choices draw from one seeded stream, in order.
        generators = {id(job): generator_for(job.sampling, device) for job in jobs}
        row_generators = [generators[id(job)] for job, _ in choices]
        samplings = [job.sampling for job, _ in choices]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._eos_ids)
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor(
            [[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device
        )
        padded_mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        prompt_mask = torch.tensor(padded_mask, dtype=torch.long, device=device)
        if patched.patches:
            prefix = patched.prefix()
            virtual = prefix.num_virtual_tokens
            cache = prefix.cache_for_batch(len(rows), model.config, "exact")
        else:
            virtual = 0
            cache = DynamicCache(config=model.config)
        mask = torch.cat([prompt_mask.new_ones(len(rows), virtual), prompt_mask], dim=1)
        # As `generate` derives them from the mask: a row's tokens count from its first one.
        positions = (mask.cumsum(dim=-1) - 1).masked_fill_(mask == 0, 1)
        logits = self._forward(input_ids, mask, positions[:, virtual:], cache)
        tokens = choose_tokens(logits, samplings, row_generators)
        self._join(rows, cache, mask, mask.sum(dim=-1), torch.tensor(tokens, device=device))
        self._samplings += samplings
        self._generators += row_generators
        return self._take(tokens, first=self.size - len(rows))

    def step(self) -> int:
        """Run one decoding step over every row; tokens made."""
        import torch

        assert self._cache is not None and self._mask is not None
        assert self._positions is not None and self._last is not None
        mask = torch.cat([self._mask, self._mask.new_ones(self.size, 1)], dim=1)
        logits = self._forward(self._last[:, None], mask, self._positions[:, None], self._cache)
        self._mask, self._positions = mask, self._positions + 1
        tokens = choose_tokens(logits, self._samplings, self._generators)
        self._last = torch.tensor(tokens, device=self._last.device)
        return self._take(tokens, first=0)

    def fail(self, message: str) -> None:
        """End every running row's job with `message` and empty the batch."""
        from ppatch.serve.jobs import Failed

        for job in self.jobs():
            job.emit(Failed(message))
        self._keep([])

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        """The next-token logits of each row (`[rows, vocab]`); `cache` grows by the input."""
        import torch

        model = self.patched.model
        # As PatchedModel does for every call that carries its prefix.
        attention = grouped_attention_for(model) if self.patched.patches else nullcontext()
        with torch.inference_mode(), attention:
            output = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_keyword(model): cache},
                logits_to_keep=1,
            )
        logits: torch.Tensor = output.logits[:, -1, :]
        return logits

    def _join(
        self,
        rows: list[Row],
        cache: DynamicCache,
        mask: torch.Tensor,
        positions: torch.Tensor,
        last: torch.Tensor,
    ) -> None:
        import torch

        if self._cache is None:
            self._cache = _appending_cache(_layers(cache), self.patched.model.config)
            self._mask, self._positions, self._last = mask, positions, last
            self.rows = rows
            return
        assert self._mask is not None and self._positions is not None and self._last is not None
        width = max(self._mask.shape[1], mask.shape[1])
        layers = [
            (
                torch.cat([_left_pad(old[0], width), _left_pad(new[0], width)]),
                torch.cat([_left_pad(old[1], width), _left_pad(new[1], width)]),
            )
            for old, new in zip(_layers(self._cache), _layers(cache), strict=True)
        ]
        self._cache = _appending_cache(layers, self.patched.model.config)
        self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(mask, width)])
        self._positions = torch.cat([self._positions, positions])
        self._last = torch.cat([self._last, last])
        self.rows = self.rows + rows

    def _take(self, tokens: list[int], first: int) -> int:
        """Hand `tokens` to rows `first...`, then drop every row that ended; tokens made."""
        made = 0
        for row, token in zip(self.rows[first:], tokens, strict=True):
            if not row.finished:
                row.take(token)
                made += 0 if row.job.cancelled.is_set() else 1
        self._keep([index for index, row in enumerate(self.rows) if not row.finished])
        return made

    def _keep(self, kept: list[int]) -> None:
        """Keep only rows `kept`, and only the columns one of them still uses."""
        import torch

        if len(kept) == self.size:
            return
        if not kept:
            self.rows, self._samplings, self._generators = [], [], []
            self._cache = self._mask = self._positions = self._last = None
            return
        assert self._cache is not None and self._mask is not None
        assert self._positions is not None and self._last is not None
        index = torch.tensor(kept, device=self._mask.device)
        mask = self._mask[index]
        start = int(mask.any(dim=0).nonzero()[0])
        layers = [
            (keys[index, :, start:], values[index, :, start:])
            for keys, values in _layers(self._cache)
        ]
        self._cache = _appending_cache(layers, self.patched.model.config)
        self._mask = mask[:, start:]
        self._positions, self._last = self._positions[index], self._last[index]
        self.rows = [self.rows[i] for i in kept]
        self._samplings = [self._samplings[i] for i in kept]
        self._generators = [self._generators[i] for i in kept]


# Columns a batch's cache keeps free for the next steps' tokens; it grows by half when full.
_SPARE_COLUMNS = 64
_APPENDING_LAYER: list[type] = []


def _appending_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], config: Any) -> DynamicCache:
    """A cache holding `layers` whose steps write in place rather than copy the whole cache.

    `DynamicLayer` concatenates on every update, copying every row's keys once per token; a
    batch's cache lives for many steps, so each layer keeps buffers with spare columns instead.
    """
    from transformers import DynamicCache

    if not _APPENDING_LAYER:
        _APPENDING_LAYER.append(_define_appending_layer())
    cache = DynamicCache(config=config)
    for index, (keys, values) in enumerate(layers):
        cache.layers[index] = _APPENDING_LAYER[0](keys, values)
    return cache


def _define_appending_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    class AppendingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
        """A `DynamicLayer` whose `keys`/`values` are views of the first columns of buffers."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.lazy_initialization(keys, values)
            self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
            self._write(keys, values, held=0)

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            held = int(self.keys.shape[-2]) if self.keys is not None else 0
            return self._write(key_states, value_states, held)

        def _write(
            self, key_states: torch.Tensor, value_states: torch.Tensor, held: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
            length = held + int(key_states.shape[-2])
            if self._buffers is None or length > self._buffers[0].shape[-2]:
                self._buffers = grown_buffers(
                    (self.keys, self.values),
                    (key_states, value_states),
                    held=held,
                    length=length,
                    spare=_SPARE_COLUMNS,
                )
            keys, values = self._buffers
            keys[:, :, held:length].copy_(key_states)
            values[:, :, held:length].copy_(value_states)
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            return self.keys, self.values

    return AppendingLayer


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's keys and values (`[rows, kv_heads, columns, head_dim]`)."""
    import torch

    pairs = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
            raise TypeError(f"the cache layer {type(layer).__name__} holds no keys and values")
        pairs.append((keys, values))
    return pairs


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """`tensor` with zero columns in front (dimension -2 for keys, -1 for a mask) up to `width`."""
    import torch

    dim = -1 if tensor.ndim == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
