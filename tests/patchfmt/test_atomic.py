"""`patchfmt.atomic`: the one atomic writer of the format library, the server and the client."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from patchfmt.atomic import atomic_write_bytes, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_whole_with_the_asked_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_mode_none_keeps_the_file_owner_only(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "secret", b"x", mode=None)
    assert _mode(tmp_path / "secret") == 0o600


def test_missing_folders_are_made_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f"
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(target, b"x")
    assert not (tmp_path / "a").exists()
    atomic_write_bytes(target, b"x", make_parents=True)
    assert target.read_bytes() == b"x"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
