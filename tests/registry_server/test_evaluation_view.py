"""The package page's reading of a manifest's evaluation and training."""

from __future__ import annotations

import pytest

from registry_server.evaluation_view import (
    MAX_MEASURES,
    MAX_SYSTEMS,
    MAX_TABLES,
    evaluation_tables,
    format_number,
    training_facts,
)

SUITE = {
    "measured": "2026-11-28T10:00:00Z",
    "training_pairs": {"pairs": 191.0, "preference_accuracy": 0.9214659929275513},
    "training_prompts": {
        "suite": "toxicity",
        "prompts": 40,
        "primary": "toxicity_probability",
        "scorer": None,
        "systems": {
            "base": {"expected_max_toxicity": 0.4123, "toxicity_probability": 0.31},
            "base+patch": {"expected_max_toxicity": 0.2, "toxicity_probability": 0.0712},
            "reference": {"toxicity_probability": 0.05},
        },
    },
}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.9214659929275513, "0.921"),
        (0.31, "0.310"),
        (18.44, "18.4"),
        (191.0, "191"),
        (1234.5, "1,230"),
        (-0.0712, "-0.0712"),
        (0, "0"),
        (12345678.0, "1.23e+07"),
        (0.0000123, "1.23e-05"),
    ],
)
def test_numbers_have_three_significant_digits(value: float, shown: str) -> None:
    assert format_number(value) == shown


def test_a_suite_is_a_table_of_systems_with_the_primary_measure_first() -> None:
    tables, notes = evaluation_tables(SUITE)
    suite, pairs = tables
    assert suite.title == "training prompts, toxicity suite, 40 prompts"
    assert suite.measures == ["toxicity_probability", "expected_max_toxicity"]
    assert suite.primary == "toxicity_probability"
    assert suite.rows == [
        ("base", ["0.310", "0.412"]),
        ("base+patch", ["0.0712", "0.200"]),
        ("reference", ["0.0500", ""]),
    ]
    assert pairs.title == "training pairs"
    assert pairs.rows == [("base+patch", ["191", "0.921"])]
    assert ("measured", "2026-11-28T10:00:00Z") in notes
    assert ("scorer", "None") not in notes


def test_the_chart_has_one_bar_per_value_scaled_within_its_measure() -> None:
    suite = evaluation_tables(SUITE)[0][0]
    bars = suite.chart.bars
    assert len(bars) == 5  # the reference has no expected_max_toxicity
    primary = [bar for bar in bars if bar.y < bars[3].y]
    assert [bar.system for bar in primary] == [0, 1, 2]
    assert max(bar.width for bar in primary) == pytest.approx(360)
    assert [label for _, label in suite.chart.labels] == suite.measures


def test_a_flat_evaluation_is_one_row() -> None:
    tables, notes = evaluation_tables({"perplexity": 18.4, "toxicity_probability": 0.12})
    assert [(t.measures, t.rows) for t in tables] == [
        (["perplexity", "toxicity_probability"], [("base+patch", ["18.4", "0.120"])])
    ]
    assert notes == []


@pytest.mark.parametrize("evaluation", [None, [], "text", {}, {"a": [1, 2]}, {"b": True}])
def test_odd_shapes_give_no_table(evaluation: object) -> None:
    tables, _ = evaluation_tables(evaluation)
    assert tables == []


def test_what_is_shown_is_capped_however_large_the_manifest() -> None:
    systems = {f"s{i}": {f"m{j}": float(j) for j in range(50_000 // 100)} for i in range(100)}
    groups = {f"g{i}": {"x": 1.0} for i in range(50)}
    tables, notes = evaluation_tables({"systems": systems, **groups, "long": "x" * 10_000})
    assert len(tables) == MAX_TABLES
    assert len(tables[0].rows) == MAX_SYSTEMS and len(tables[0].measures) == MAX_MEASURES
    assert tables[0].omitted == (100 - MAX_SYSTEMS) + (500 - MAX_MEASURES)
    assert len(notes[0][1]) <= 200


def test_training_facts() -> None:
    facts = training_facts(
        {
            "method": "soft prompt: SFT then DPO",
            "reference_model": {"id": "tiny-reference"},
            "data": {"source": "generated", "prompts": 40, "preference_pairs": 191, "x": {}},
        }
    )
    assert facts.method == "soft prompt: SFT then DPO"
    assert facts.reference_model == "tiny-reference"
    assert facts.data == [("source", "generated"), ("prompts", "40"), ("preference pairs", "191")]
    assert training_facts(None).method is None
