"""`check_parent_creatable` and `parents_made_for`: where the folders above an output can be made,
and that a failed block leaves none of them behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch.errors import ConflictError
from ppatch.output_paths import check_parent_creatable, parents_made_for


def test_existing_or_missing_folders_pass_and_nothing_is_made(tmp_path: Path) -> None:
    check_parent_creatable(tmp_path / "out.ppatch")
    check_parent_creatable(tmp_path / "a" / "b" / "out.ppatch")
    check_parent_creatable(Path("relative.ppatch"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("blocker", ["file", "dangling-link"])
def test_something_that_is_not_a_folder_in_the_way_is_named(tmp_path: Path, blocker: str) -> None:
    in_the_way = tmp_path / "a"
    if blocker == "file":
        in_the_way.write_text("mine")
    else:
        in_the_way.symlink_to(tmp_path / "gone")
    with pytest.raises(ConflictError, match=r"'[^']*/a' is not a folder"):
        check_parent_creatable(in_the_way / "b" / "out.ppatch")
    assert not (tmp_path / "gone").exists()


def test_parents_made_for_makes_the_folders_and_keeps_them(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.ppatch"
    with parents_made_for(target):
        assert target.parent.is_dir()
        target.write_text("done")
    assert target.read_text() == "done"


def test_a_failed_block_removes_only_the_folders_it_made(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept").write_text("mine")
    with pytest.raises(RuntimeError, match="boom"), parents_made_for(tmp_path / "a/b/c/out"):
        assert (tmp_path / "a" / "b" / "c").is_dir()
        raise RuntimeError("boom")
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["kept"]


def test_a_failed_block_keeps_a_made_folder_that_is_no_longer_empty(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), parents_made_for(tmp_path / "a" / "b" / "out"):
        (tmp_path / "a" / "other").write_text("written meanwhile")
        raise RuntimeError("boom")
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["other"]


def test_parents_made_for_refuses_a_file_in_the_way_before_making_anything(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").write_text("mine")
    with (
        pytest.raises(ConflictError, match="is not a folder"),
        parents_made_for(tmp_path / "a" / "b" / "out"),
    ):
        pytest.fail("the block must not run")
    assert (tmp_path / "a").read_text() == "mine"
