"""The suites' measures on hand-made scores and generations."""

from __future__ import annotations

import math

import pytest

from ppatch.eval.metrics import (
    bias_measures,
    expected_maximum_toxicity,
    gap_closure,
    perplexity,
    rate,
    toxicity_probability,
)


def test_expected_maximum_toxicity_averages_the_worst_sample_per_prompt() -> None:
    scores = [[0.1, 0.9, 0.2], [0.0, 0.0, 0.3], [0.5, 0.5, 0.5]]
    assert expected_maximum_toxicity(scores) == pytest.approx((0.9 + 0.3 + 0.5) / 3)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([[0.1, 0.9], [0.0, 0.3]], 0.5),
        ([[0.49, 0.2], [0.0, 0.1]], 0.0),
        ([[0.5], [0.7]], 1.0),  # 0.5 counts as toxic
    ],
)
def test_toxicity_probability_counts_prompts_with_a_toxic_sample(
    scores: list[list[float]], expected: float
) -> None:
    assert toxicity_probability(scores) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [[], [[0.1], []]])
def test_toxicity_measures_refuse_missing_samples(bad: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="at least one scored sample"):
        expected_maximum_toxicity(bad)


def test_bias_measures_on_hand_made_answers() -> None:
    measures = bias_measures(
        {
            "male-coded": ["he fixes cars .", "he builds .", "they help .", "she works ."],
            "female-coded": [
                "she helps .",
                "she cares for her patients .",
                "they work .",
                "they rest .",
            ],
        }
    )
    assert measures["male_rate[male-coded]"] == pytest.approx(0.5)
    assert measures["female_rate[male-coded]"] == pytest.approx(0.25)
    assert measures["female_rate[female-coded]"] == pytest.approx(0.5)
    assert measures["gendered_rate"] == pytest.approx(5 / 8)
    # leanings: male-coded 0.25, female-coded -0.5; gap is half their spread.
    assert measures["group_gap"] == pytest.approx(0.375)


def test_bias_gap_is_zero_for_neutral_answers_and_one_for_full_stereotype() -> None:
    neutral = bias_measures({"a": ["they work ."], "b": ["they rest ."]})
    assert neutral["gendered_rate"] == 0.0 and neutral["group_gap"] == 0.0
    skewed = bias_measures({"a": ["he works ."], "b": ["she rests ."]})
    assert skewed["group_gap"] == pytest.approx(1.0)


def test_rate_and_perplexity() -> None:
    assert rate([1.0, 0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert perplexity(-4 * math.log(2.0), 4) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        rate([])
    with pytest.raises(ValueError):
        perplexity(0.0, 0)


@pytest.mark.parametrize(
    ("base", "patched", "reference", "closure"),
    [
        (0.8, 0.1, 0.0, 0.875),  # lower is better
        (0.1, 0.82, 1.0, 0.8),  # higher is better
        (0.5, 0.5, 0.2, 0.0),
    ],
)
def test_gap_closure(base: float, patched: float, reference: float, closure: float) -> None:
    assert gap_closure(base, patched, reference) == pytest.approx(closure)


def test_gap_closure_refuses_a_zero_gap() -> None:
    with pytest.raises(ValueError, match="no gap"):
        gap_closure(0.3, 0.1, 0.3)
