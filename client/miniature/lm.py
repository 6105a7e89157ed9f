"""Tiny Llama-architecture language models trained from scratch on the grammars' text.

Llama because its rotary positions make attention depend on relative distance: a 50-token soft
prompt shifts every position, and absolute position embeddings would put the answer where the
model never trained.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ppatch.progress import progress

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM

__all__ = ["ModelShape", "new_model", "train_language_model"]


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 256


def new_model(shape: ModelShape, vocab_size: int, pad_id: int, eos_id: int) -> LlamaForCausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_positions,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def _batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), -100, dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(ids)
    return input_ids, labels


def train_language_model(
    model: LlamaForCausalLM,
    sample: Callable[[random.Random], list[int]],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    pad_id: int,
    description: str,
) -> float:
    """Train every weight of `model` on sampled sequences; returns the last step's loss.

    Right padding needs no attention mask: causal attention never lets a real token see the
    padding after it, and padded positions carry no loss.
    """
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_value = math.nan
    with progress(description, total=steps) as advance:
        for _ in range(steps):
            input_ids, labels = _batch([sample(rng) for _ in range(batch_size)], pad_id)
            loss = model(input_ids=input_ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(loss.detach())
            advance(1)
    model.eval()  # type: ignore[no-untyped-call]
    return loss_value
