"""Prompt and pair files: every well-formed file reads back, every bad line is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppatch.errors import NotFoundError
from ppatch.train.data import InvalidDataFileError, read_jsonl, read_pairs, read_prompts

TEXT = st.text(min_size=1).filter(lambda text: text.strip() != "")
RECORD = st.fixed_dictionaries({"prompt": TEXT}, optional={"group": st.text()})


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORD, min_size=1, max_size=8), blank_every=st.integers(2, 5))
def test_prompt_files_read_back(
    tmp_path: Path, records: list[dict[str, str]], blank_every: int
) -> None:
    lines: list[str] = []
    for index, record in enumerate(records):
        if index % blank_every == 1:
            lines.append("   ")  # blank lines are skipped
        lines.append(json.dumps(record))
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_prompts(path) == records


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.text(min_size=1).filter(lambda text: text.strip() != "" and "\n" not in text))
def test_any_line_parses_or_is_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "fine"}) + "\n" + line + "\n", encoding="utf-8")
    try:
        records = read_jsonl(path)
    except InvalidDataFileError as error:
        assert error.line == 2
        assert f"{str(path)!r} line 2: " in str(error)
    else:
        assert len(records) == 2 and isinstance(records[1][1], dict)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"prompt": "p", "chosen": "c"}, "'rejected' must be a non-empty string, got None"),
        (
            {"prompt": "p", "chosen": 3, "rejected": "r"},
            "'chosen' must be a non-empty string, got 3",
        ),
        ({"chosen": "c", "rejected": "r"}, "'prompt' must be a non-empty string"),
    ],
)
def test_bad_pairs_are_named(tmp_path: Path, record: dict[str, object], problem: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(InvalidDataFileError, match="line 1") as caught:
        read_pairs(path)
    assert problem in str(caught.value)


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        read_prompts(tmp_path / "absent.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidDataFileError, match="not UTF-8"):
        read_prompts(binary)
