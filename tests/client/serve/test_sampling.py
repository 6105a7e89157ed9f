"""Per-row sampling: the same rules as Hugging Face `generate`, row by row."""

from __future__ import annotations

import pytest

from ppatch.serve.sampling import Sampling, _filtered, choose_tokens, generator_for

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.9, 0.999])
def test_the_nucleus_is_the_one_transformers_keeps(top_p: float) -> None:
    from transformers import TopPLogitsWarper

    scores = torch.randn(3, 40, generator=torch.Generator().manual_seed(5)) * 3
    expected = TopPLogitsWarper(top_p)(None, scores.clone())
    for row in range(3):
        assert torch.equal(_filtered(scores[row], top_p), expected[row])


def test_greedy_rows_take_the_argmax_and_sampled_rows_keep_to_their_nucleus() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.9], [0.0, 5.0, 1.0, 4.9], [9.0, 0.0, 0.0, 0.0]])
    rows = [Sampling(0.0), Sampling(1.0, top_p=0.5), Sampling(1.0, top_p=0.999)]
    drawn = {
        tuple(choose_tokens(logits, rows, [None, torch.Generator().manual_seed(s), None]))
        for s in range(40)
    }
    assert {tokens[0] for tokens in drawn} == {1}
    assert {tokens[1] for tokens in drawn} == {1}  # 1 alone holds half the probability
    assert {tokens[2] for tokens in drawn} == {0}


def test_a_seed_gives_a_stream_of_its_own_and_greedy_or_unseeded_rows_none() -> None:
    seeded = generator_for(Sampling(1.0, seed=3), torch.device("cpu"))
    again = generator_for(Sampling(1.0, seed=3), torch.device("cpu"))
    assert seeded is not None and again is not None
    assert torch.equal(torch.rand(4, generator=seeded), torch.rand(4, generator=again))
    assert generator_for(Sampling(0.0, seed=3), torch.device("cpu")) is None
    assert generator_for(Sampling(1.0), torch.device("cpu")) is None
