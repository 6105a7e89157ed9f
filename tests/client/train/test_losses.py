"""The DPO and SFT losses against closed forms computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ppatch.train.losses import dpo_loss, sft_loss


def _closed_form(pc: float, pr: float, rc: float, rr: float, beta: float) -> float:
    margin = beta * ((pc - rc) - (pr - rr))
    return math.log(1 + math.exp(-margin))  # -log sigmoid(margin)


@pytest.mark.parametrize(
    ("pc", "pr", "rc", "rr", "beta"),
    [
        (-3.0, -5.0, -4.0, -4.0, 0.1),  # policy already prefers chosen
        (-6.0, -2.0, -4.0, -4.0, 0.1),  # policy prefers rejected
        (-4.0, -4.0, -4.0, -4.0, 0.5),  # no change from reference: log 2
        (-10.0, -30.0, -12.0, -11.0, 1.0),
        (-1.0, -2.0, -1.0, -2.0, 0.25),  # same margin as reference: log 2
    ],
)
def test_dpo_loss_matches_closed_form(
    pc: float, pr: float, rc: float, rr: float, beta: float
) -> None:
    loss = dpo_loss(
        torch.tensor([pc]), torch.tensor([pr]), torch.tensor([rc]), torch.tensor([rr]), beta
    )
    assert float(loss[0]) == pytest.approx(_closed_form(pc, pr, rc, rr, beta), rel=1e-6)


def test_dpo_loss_is_log_two_at_the_reference() -> None:
    values = torch.tensor([-1.5, -7.0])
    loss = dpo_loss(values, values.flip(0), values, values.flip(0), beta=0.3)
    assert torch.allclose(loss, torch.full((2,), math.log(2.0)))


def test_dpo_gradient_raises_chosen_and_lowers_rejected() -> None:
    chosen = torch.tensor([-4.0], requires_grad=True)
    rejected = torch.tensor([-4.0], requires_grad=True)
    dpo_loss(
        chosen, rejected, torch.tensor([-4.0]), torch.tensor([-4.0]), beta=0.1
    ).sum().backward()
    assert chosen.grad is not None and rejected.grad is not None
    # d/dx of -log sigmoid(beta * x) at 0 is -beta / 2.
    assert float(chosen.grad[0]) == pytest.approx(-0.05)
    assert float(rejected.grad[0]) == pytest.approx(0.05)


def test_sft_loss_is_mean_negative_logprob_per_answer_token() -> None:
    logprobs = torch.tensor([-2.0, -6.0])  # summed over 1 and 3 answer tokens
    counts = torch.tensor([1, 3])
    assert float(sft_loss(logprobs, counts)) == pytest.approx(8.0 / 4.0)
