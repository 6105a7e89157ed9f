"""Choosing each row's next token from its logits with the row's own sampling parameters.

Rows of one running batch may ask for different temperatures, `top_p` and seeds; each row is
processed as Hugging Face `generate` would process it alone: greedy is the argmax, sampling
divides by the temperature, keeps the smallest set of tokens whose probability reaches `top_p`
(`TopPLogitsWarper`'s rule), and draws from the softmax with the row's generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["Sampling", "choose_tokens", "generator_for"]


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen: greedy when `temperature` is 0."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def generator_for(sampling: Sampling, device: torch.device) -> torch.Generator | None:
    """A generator of the request's own (seeded) stream, or None for the global one."""
    import torch

    if sampling.greedy or sampling.seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(sampling.seed)
    return generator


def choose_tokens(
    logits: torch.Tensor,
    samplings: Sequence[Sampling],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """The next token of each row of `logits` (`[rows, vocab]`), in row order.

    Rows draw in order, so rows sharing one generator (the choices of one seeded request) get
    the same tokens whatever other rows share the batch.
    """
    import torch

    scores = logits.float()
    chosen = scores.argmax(dim=-1).tolist()
    for row, (sampling, generator) in enumerate(zip(samplings, generators, strict=True)):
        if sampling.greedy:
            continue
        probabilities = _filtered(scores[row] / sampling.temperature, sampling.top_p).softmax(-1)
        drawn = torch.multinomial(probabilities, 1, generator=generator)
        chosen[row] = int(drawn.item())
    return [int(token) for token in chosen]


def _filtered(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """`scores` with the tokens outside the `top_p` nucleus at minus infinity."""
    if top_p >= 1.0:
        return scores
    ordered, order = scores.sort(descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[-1:] = False  # the most likely token always stays
    return scores.masked_fill(remove.scatter(0, order, remove), float("-inf"))
