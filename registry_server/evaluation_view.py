"""A manifest's `evaluation` and `training` made readable: tables of systems (base,
base+patch, reference) against measures, numbers to three significant digits, the primary
measure first, and the geometry of a bar chart drawn as inline SVG.

Pure functions over the manifest's JSON, whatever shape a publisher gave it: known shapes
(a suite's `systems`, a flat group of numbers) become tables; anything else is listed as
text. What a page shows is capped (the constants below), so a large manifest cannot make a
large page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_MEASURES",
    "MAX_NOTES",
    "MAX_SYSTEMS",
    "MAX_TABLES",
    "Bar",
    "Chart",
    "MeasureTable",
    "TrainingFacts",
    "evaluation_tables",
    "format_number",
    "training_facts",
]

MAX_TABLES = 6
MAX_SYSTEMS = 8
MAX_MEASURES = 12
MAX_NOTES = 12
MAX_TEXT = 200

# Chart geometry, in SVG user units.
_LABEL_WIDTH = 200
_BAR_SPACE = 360
_BAR_HEIGHT = 16
_GAP = 10


@dataclass(frozen=True)
class Bar:
    system: int  # index into the table's systems: the bar's colour
    x: float
    y: float
    width: float
    value: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    labels: list[tuple[float, str]]  # (y, measure)
    bars: list[Bar]


@dataclass(frozen=True)
class MeasureTable:
    title: str
    measures: list[str]
    primary: str | None
    rows: list[tuple[str, list[str]]]  # (system, one cell per measure)
    chart: Chart
    omitted: int = 0  # systems or measures left out by the caps


@dataclass(frozen=True)
class TrainingFacts:
    method: str | None
    reference_model: str | None
    data: list[tuple[str, str]] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    if isinstance(value, list | dict):  # never the repr of what may be a megabyte of JSON
        return f"{len(value)} {'items' if isinstance(value, list) else 'entries'}"
    shown = value if isinstance(value, str) else repr(value)
    return shown if len(shown) <= MAX_TEXT else shown[: MAX_TEXT - 1] + "…"


def format_number(value: float) -> str:
    """Three significant digits, without an exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    rounded = float(f"{value:.3g}")
    if abs(rounded) >= 1e6 or abs(rounded) < 1e-4:
        return f"{rounded:.3g}"
    if rounded == int(rounded):
        return f"{int(rounded):,}"
    decimals = max(0, 2 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


def _chart(measures: list[str], systems: list[tuple[str, dict[str, float]]]) -> Chart:
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    y = float(_GAP)
    for measure in measures:
        values = [numbers.get(measure) for _, numbers in systems]
        scale = max((abs(v) for v in values if v is not None), default=0.0) or 1.0
        labels.append((y + _BAR_HEIGHT * len(systems) / 2, measure))
        for index, value in enumerate(values):
            if value is not None:
                width = _BAR_SPACE * abs(value) / scale
                bars.append(Bar(index, _LABEL_WIDTH, y, width, format_number(value)))
            y += _BAR_HEIGHT
        y += _GAP
    return Chart(_LABEL_WIDTH + _BAR_SPACE + 80, int(y), labels, bars)


def _table(
    title: str, systems: list[tuple[str, dict[str, Any]]], primary: str | None
) -> MeasureTable:
    numeric = [
        (_text(label), {k: float(v) for k, v in values.items() if _is_number(v)})
        for label, values in systems
    ]
    seen: dict[str, None] = {}  # ordered and linear, however many measures a manifest lists
    for _, values in numeric:
        seen.update(dict.fromkeys(values))
    measures = list(seen)
    if primary in measures:
        measures.remove(primary)
        measures.insert(0, primary)
    shown_systems, shown_measures = numeric[:MAX_SYSTEMS], measures[:MAX_MEASURES]
    rows = [
        (
            label,
            [format_number(values[m]) if m in values else "" for m in shown_measures],
        )
        for label, values in shown_systems
    ]
    omitted = len(numeric) - len(shown_systems) + len(measures) - len(shown_measures)
    return MeasureTable(
        title=_text(title),
        measures=[_text(m) for m in shown_measures],
        primary=primary if primary in shown_measures else None,
        rows=rows,
        chart=_chart(shown_measures, shown_systems),
        omitted=omitted,
    )


def _suite_title(key: str, group: dict[str, Any]) -> str:
    parts = [key.replace("_", " ")]
    if isinstance(group.get("suite"), str):
        parts.append(f"{group['suite']} suite")
    if _is_number(group.get("prompts")):
        parts.append(f"{format_number(group['prompts'])} prompts")
    if isinstance(group.get("scorer"), str):
        parts.append(f"scored by {group['scorer']}")
    return ", ".join(parts)


def _systems_of(group: dict[str, Any]) -> list[tuple[str, dict[str, Any]]] | None:
    systems = group.get("systems")
    if not isinstance(systems, dict):
        return None
    return [(label, values) for label, values in systems.items() if isinstance(values, dict)]


def evaluation_tables(evaluation: Any) -> tuple[list[MeasureTable], list[tuple[str, str]]]:
    """The tables of `evaluation` (suites comparing systems first), and its other entries as
    (name, text) notes."""
    if not isinstance(evaluation, dict):
        return [], []
    tables: list[MeasureTable] = []
    groups: list[MeasureTable] = []
    notes: list[tuple[str, str]] = []
    flat = {k: v for k, v in evaluation.items() if _is_number(v)}
    top_systems = _systems_of(evaluation)
    if top_systems:
        primary = evaluation.get("primary")
        tables.append(
            _table(_suite_title("evaluation", evaluation), top_systems, _str_or_none(primary))
        )
    elif flat:
        tables.append(_table("measures", [("base+patch", flat)], None))
    for key, value in evaluation.items():
        if key in flat or key in ("systems", "primary", "suite", "scorer", "prompts"):
            continue
        if isinstance(value, dict) and (systems := _systems_of(value)):
            primary = _str_or_none(value.get("primary"))
            tables.append(_table(_suite_title(key, value), systems, primary))
        elif isinstance(value, dict) and any(_is_number(v) for v in value.values()):
            groups.append(_table(key.replace("_", " "), [("base+patch", value)], None))
        else:
            notes.append((_text(key), _text(value)))
    return (tables + groups)[:MAX_TABLES], notes[:MAX_NOTES]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def training_facts(training: Any) -> TrainingFacts:
    """The training method, the reference model and the data counts of `training`."""
    if not isinstance(training, dict):
        return TrainingFacts(None, None)
    method = training.get("method")
    reference = training.get("reference_model")
    reference_id = reference.get("id") if isinstance(reference, dict) else reference
    data = training.get("data")
    counts = (
        [
            (_text(k.replace("_", " ")), format_number(v) if _is_number(v) else _text(v))
            for k, v in data.items()
            if _is_number(v) or isinstance(v, str)
        ]
        if isinstance(data, dict)
        else []
    )
    return TrainingFacts(
        _text(method) if isinstance(method, str) else None,
        _text(reference_id) if isinstance(reference_id, str) else None,
        counts[:MAX_NOTES],
    )
