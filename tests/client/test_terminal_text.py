"""What `printable` keeps and removes."""

from __future__ import annotations

import pytest

from ppatch.terminal_text import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ümlauts and 日本語", "plain text, ümlauts and 日本語"),
        ("bad\x1b[2K\x1b[1A up to date", "bad[2K[1A up to date"),
        ("bell\x07 nul\x00 del\x7f csi\x9b", "bell nul del csi"),
        ("tab\tand\r\nnewline", "tabandnewline"),
        ("\u202eevil\u202c \u2066isolate\u2069", "evil isolate"),
    ],
)
def test_control_characters_are_removed(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_newlines_are_kept_only_when_asked() -> None:
    assert printable("one\ntwo\r\x1b", newlines=True) == "one\ntwo"
    assert printable("one\ntwo") == "onetwo"


def test_non_text_values_are_shown_as_text() -> None:
    assert printable(None) == "None"
    assert printable(3.5) == "3.5"
