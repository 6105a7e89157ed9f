"""The soft prompt's initial value, with PEFT's semantics (peft/tuners/prompt_tuning/model.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ppatch.errors import UsageError
from ppatch.train.modeling import LoadedModel

if TYPE_CHECKING:
    import torch

__all__ = ["init_token_ids", "initial_prompt"]


def init_token_ids(text_ids: list[int], virtual_tokens: int) -> list[int]:
    """PEFT's TEXT init: the text's token ids, cut to length or repeated until long enough."""
    if not text_ids:
        raise UsageError("--init-text tokenizes to no tokens; give words the tokenizer knows")
    if virtual_tokens < 1:
        raise UsageError(f"--virtual-tokens must be at least 1, got {virtual_tokens!r}")
    repeats = -(-virtual_tokens // len(text_ids))
    return (text_ids * repeats)[:virtual_tokens]


def initial_prompt(
    loaded: LoadedModel, virtual_tokens: int, init_text: str | None, seed: int
) -> torch.Tensor:
    """`[virtual_tokens, hidden_size]` float32 rows of the model's own token embeddings:
    those of `init_text` (tokenized as PEFT does, special tokens included), or of tokens drawn
    at random with `seed` (PEFT's SAMPLE_VOCAB)."""
    import torch

    embeddings = loaded.model.get_input_embeddings()
    if init_text is not None:
        ids = init_token_ids(list(loaded.tokenizer(init_text)["input_ids"]), virtual_tokens)
    else:
        if virtual_tokens < 1:
            raise UsageError(f"--virtual-tokens must be at least 1, got {virtual_tokens!r}")
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randint(0, embeddings.num_embeddings, (virtual_tokens,), generator=generator)
        ids = drawn.tolist()
    index = torch.tensor(ids, dtype=torch.long, device=embeddings.weight.device)
    with torch.no_grad():
        rows: torch.Tensor = embeddings(index).detach().clone().float()
    return rows
