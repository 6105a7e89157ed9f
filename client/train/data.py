"""Reading prompt and preference-pair files (JSONL), with errors that name the line.

A prompt file holds one `{"prompt": ...}` object per line; other keys are kept (evaluation
suites read `group` and `kind`). A pair file holds `{"prompt", "chosen", "rejected"}` per line,
for data generated elsewhere. Blank lines are skipped; anything else that is not such an object
stops the run before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppatch.errors import NotFoundError, UsageError

__all__ = ["InvalidDataFileError", "PreferencePair", "read_jsonl", "read_pairs", "read_prompts"]


class InvalidDataFileError(UsageError):
    """A JSONL input file is empty or has a malformed line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{str(path)!r} line {line}" if line is not None else repr(str(path))
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


def read_jsonl(path: Path | str) -> list[tuple[int, dict[str, Any]]]:
    """Every non-blank line as `(line number, object)`; at least one line."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"data file {str(path)!r} not found")
    try:
        # Bytes, not read_text: universal newlines would turn a lone "\r" into a line break.
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDataFileError(path, None, f"not UTF-8 text ({error.reason})") from error
    records: list[tuple[int, dict[str, Any]]] = []
    # JSON Lines separates records by "\n" only: `str.splitlines` would also split on form
    # feeds and U+2028, which JSON strings may hold raw, and miscount the lines.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidDataFileError(path, number, f"not valid JSON ({error.msg})") from error
        if not isinstance(value, dict):
            raise InvalidDataFileError(
                path, number, f"expected a JSON object, got {type(value).__name__}"
            )
        records.append((number, value))
    if not records:
        raise InvalidDataFileError(path, None, "the file holds no records")
    return records


def _text_field(path: Path, number: int, record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidDataFileError(
            path, number, f"{key!r} must be a non-empty string, got {value!r}"
        )
    return value


def read_prompts(path: Path | str) -> list[dict[str, Any]]:
    """The records of a prompt file, each with a non-empty string `prompt`."""
    path = Path(path)
    records = read_jsonl(path)
    for number, record in records:
        _text_field(path, number, record, "prompt")
    return [record for _, record in records]


def read_pairs(path: Path | str) -> list[PreferencePair]:
    path = Path(path)
    return [
        PreferencePair(
            prompt=_text_field(path, number, record, "prompt"),
            chosen=_text_field(path, number, record, "chosen"),
            rejected=_text_field(path, number, record, "rejected"),
        )
        for number, record in read_jsonl(path)
    ]
