"""The two training stages on the soft prompt alone: SFT, then DPO against a frozen reference.

Only the prompt tensor is handed to the optimizer and the model's weights have
`requires_grad=False`, so the base model cannot change (tests/client/train/test_stages.py
checks every weight's bytes). Batches come from seeded permutations, so a seed fixes the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ppatch.progress import progress
from ppatch.train.losses import dpo_loss, sft_loss
from ppatch.train.modeling import LoadedModel, answer_logprobs

if TYPE_CHECKING:
    import torch

__all__ = ["Example", "PairExample", "reference_logprobs", "train_dpo", "train_sft"]


@dataclass(frozen=True)
class Example:
    """A prompt's token ids and an answer's, the answer ending with the end token."""

    prompt: list[int]
    answer: list[int]


@dataclass(frozen=True)
class PairExample:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def _batches(size: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """`steps` batches of indices, walking seeded permutations epoch after epoch."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < min(batch_size, size):
            order += torch.randperm(size, generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        yield batch


def _trainable(prompt: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    return prompt.detach().clone().to(loaded.device).requires_grad_(True)


def train_sft(
    loaded: LoadedModel,
    prompt: torch.Tensor,
    examples: Sequence[Example],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """Maximise the likelihood of the reference's answers (answer tokens only)."""
    import torch

    weights = _trainable(prompt, loaded)
    optimizer = torch.optim.AdamW([weights], lr=learning_rate, weight_decay=0.0)
    with progress("SFT on the soft prompt", total=steps) as advance:
        for batch in _batches(len(examples), batch_size, steps, seed):
            logprobs, counts = answer_logprobs(
                loaded,
                weights,
                [examples[i].prompt for i in batch],
                [examples[i].answer for i in batch],
            )
            loss = sft_loss(logprobs, counts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            advance(1)
    return weights.detach().cpu()


def reference_logprobs(
    loaded: LoadedModel,
    prompt: torch.Tensor,
    pairs: Sequence[PairExample],
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probabilities under a frozen prompt, computed once for all pairs."""
    import torch

    frozen = prompt.to(loaded.device)
    chosen: list[torch.Tensor] = []
    rejected: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            prompts = [p.prompt for p in chunk]
            chosen.append(answer_logprobs(loaded, frozen, prompts, [p.chosen for p in chunk])[0])
            rejected.append(
                answer_logprobs(loaded, frozen, prompts, [p.rejected for p in chunk])[0]
            )
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(
    loaded: LoadedModel,
    prompt: torch.Tensor,
    reference_prompt: torch.Tensor,
    pairs: Sequence[PairExample],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    beta: float,
    seed: int,
    chosen_nll_weight: float = 0.0,
) -> torch.Tensor:
    """Prefer the reference's answers over the base model's, measured against the frozen
    `reference_prompt` (the SFT result: the policy DPO starts from, as in the paper).

    `chosen_nll_weight` adds that multiple of the chosen answers' per-token negative
    log-likelihood to the loss (DPO+NLL, as in Pang et al. 2024's RPO): pure DPO can widen the
    margin by making one late token of the rejected answer unlikely (complying with another
    verb instead of refusing) while the chosen answer grows no likelier.
    """
    import torch

    reference_chosen, reference_rejected = reference_logprobs(
        loaded, reference_prompt, pairs, batch_size
    )
    weights = _trainable(prompt, loaded)
    optimizer = torch.optim.AdamW([weights], lr=learning_rate, weight_decay=0.0)
    with progress("DPO on the soft prompt", total=steps) as advance:
        for batch in _batches(len(pairs), batch_size, steps, seed):
            prompts = [pairs[i].prompt for i in batch]
            # Chosen and rejected answers in one forward pass.
            logprobs, counts = answer_logprobs(
                loaded,
                weights,
                prompts + prompts,
                [pairs[i].chosen for i in batch] + [pairs[i].rejected for i in batch],
            )
            index = torch.tensor(batch, device=loaded.device)
            loss = dpo_loss(
                logprobs[: len(batch)],
                logprobs[len(batch) :],
                reference_chosen.to(loaded.device)[index],
                reference_rejected.to(loaded.device)[index],
                beta,
            ).mean()
            if chosen_nll_weight:
                loss = loss + chosen_nll_weight * sft_loss(
                    logprobs[: len(batch)], counts[: len(batch)]
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            advance(1)
    return weights.detach().cpu()
