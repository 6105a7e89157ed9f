"""`check_parent_creatable`: where the folders above an output can be made, and where not."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch.atomic import check_parent_creatable
from ppatch.errors import ConflictError


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
