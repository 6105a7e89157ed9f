"""The two training objectives, as pure functions of log-probabilities.

Written here rather than taken from TRL: TRL's DPOTrainer does not shift the logits past the
virtual tokens of a prompt-tuning model, so its log-probabilities would be those of the wrong
tokens. These functions see only per-sequence log-probabilities, computed by
`ppatch.train.modeling.answer_logprobs`, which does the shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["dpo_loss", "sft_loss"]


def sft_loss(answer_logprobs: torch.Tensor, answer_tokens: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per answer token over the whole batch (prompt tokens excluded
    upstream), so long answers weigh by their length, as in ordinary language-model training."""
    return -answer_logprobs.sum() / answer_tokens.sum().clamp(min=1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The sigmoid DPO loss of each pair (Rafailov et al. 2023, eq. 7):

        -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

    where each term is an answer's summed log-probability under the policy or the reference.
    """
    import torch

    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -torch.nn.functional.logsigmoid(beta * margin)
