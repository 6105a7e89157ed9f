"""Patched prompts as embeddings, for servers that take `prompt_embeds` (vLLM).

A deployment that outgrows one process can serve patches on vLLM (`vllm serve MODEL
--enable-prompt-embeds`): ppatch builds each prompt's embeddings, the patches' virtual tokens
followed by the embedded prompt tokens, and vLLM runs them through the frozen model. That is
exactly PEFT's prompt-tuning input (virtual tokens first, before BOS and any chat template),
so the output is the patched model's. docs/serve.md says what it costs next to a prefix cache.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ppatch.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ppatch.runtime.patched_model import PatchedModel

__all__ = ["encode_prompt_embeds", "prompt_embeds"]


def prompt_embeds(patched: PatchedModel, token_ids: Sequence[int]) -> torch.Tensor:
    """`[num_virtual_tokens + len(token_ids), hidden]`: the virtual tokens, then the prompt's
    token embeddings, in the model's dtype (vLLM's `EmbedsPrompt` shape).

    For a chat prompt, pass the ids of the whole templated conversation (vLLM's Completions
    API, which applies no template to embeddings).
    """
    import torch

    ids = [int(token) for token in token_ids]
    if not ids:
        raise UsageError("prompt_embeds needs at least one prompt token")
    embedding: Any = patched.model.get_input_embeddings()
    vocabulary = int(embedding.weight.shape[0])
    outside = [token for token in ids if not 0 <= token < vocabulary]
    if outside:
        raise UsageError(f"token id {outside[0]} is outside the vocabulary (0..{vocabulary - 1})")
    with torch.inference_mode():
        embedded: torch.Tensor = embedding(torch.tensor(ids, device=patched.device))
        if not patched.patches:
            return embedded
        return torch.cat([patched.prompt_embeddings().to(embedded.dtype), embedded], dim=0)


def encode_prompt_embeds(embeds: torch.Tensor) -> str:
    """The tensor as vLLM's OpenAI server reads a `prompt_embeds` field: `torch.save`, base64."""
    import torch

    if embeds.ndim != 2:
        raise UsageError(
            f"prompt embeddings must be [length, hidden], got shape {tuple(embeds.shape)!r}"
        )
    buffer = io.BytesIO()
    torch.save(embeds.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
