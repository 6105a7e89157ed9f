"""The pure checks of an unsigned answer against the signed index, and the signed update check."""

from __future__ import annotations

from typing import Any

import pytest

from patchfmt.versions import is_prerelease
from ppatch.resolver import Pin
from ppatch.signed_check import is_prerelease_text, mismatch, signed_update

FP = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def release(version: str, sha: str = "1" * 64, size: int = 10, **extra: Any) -> dict[str, Any]:
    artifact = {"fingerprint": FP, "sha256": sha, "size": size, "url": f"/blobs/sha256/{sha}"}
    plain = {"version": version, "yanked": False, "yanked_reason": None, "artifacts": [artifact]}
    return plain | extra


def pin(version: str, sha: str = "1" * 64, size: int = 10) -> Pin:
    return Pin("acme", "tox", version, FP, sha, size, f"/blobs/sha256/{sha}", "tox.ppatch")


def index(*releases: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": "acme", "name": "tox", "releases": list(releases)}


def test_the_same_artifact_agrees() -> None:
    assert mismatch(pin("1.0.0"), pin("1.0.0"), index(release("1.0.0")), "R") is None


def test_a_release_never_signed() -> None:
    problem = mismatch(pin("2.0.0"), pin("1.0.0"), index(release("1.0.0")), "R")
    assert problem is not None and "never signed" in problem


def test_a_substituted_digest_or_length() -> None:
    for answered in (pin("1.0.0", sha="2" * 64), pin("1.0.0", size=11)):
        problem = mismatch(answered, pin("1.0.0"), index(release("1.0.0")), "R")
        assert problem is not None and "a substituted artifact" in problem


def test_a_hidden_yank_with_and_without_another_release() -> None:
    yanked = release("1.1.0", sha="3" * 64, yanked=True, yanked_reason="leaks")
    signed = index(release("1.0.0"), yanked)
    problem = mismatch(pin("1.1.0", sha="3" * 64), pin("1.0.0"), signed, "R")
    assert problem is not None and "hid the yank" in problem and "leaks" in problem
    alone = mismatch(pin("1.1.0", sha="3" * 64), None, index(yanked), "R")
    assert alone is not None and "hid the yank" in alone


def test_a_hidden_newer_release() -> None:
    signed = index(release("1.0.0"), release("1.1.0", sha="3" * 64))
    problem = mismatch(pin("1.0.0"), pin("1.1.0", sha="3" * 64), signed, "R")
    assert problem is not None and "hides acme/tox 1.1.0" in problem


def test_signed_update_picks_the_highest_usable_release() -> None:
    signed = index(
        release("1.0.0", yanked=True, yanked_reason="bad"),
        release("1.10.0"),
        release("1.9.0"),
        release("2.0.0-rc.1"),
        release("3.0.0", artifacts=[{"fingerprint": OTHER, "sha256": "4" * 64, "size": 1}]),
        release("2.5.0", yanked=True),
    )
    answer = signed_update(signed, "acme/tox", "1.0.0", FP)
    assert answer["latest"] == "1.10.0" and answer["found"] is True
    assert (answer["yanked"], answer["yanked_reason"]) == (True, "bad")
    current = signed_update(signed, "acme/tox", "1.10.0", FP)
    assert (current["yanked"], current["yanked_reason"]) == (False, None)


def test_signed_update_of_an_unknown_package() -> None:
    answer = signed_update(index(), "acme/tox", "1.0.0", FP)
    assert (answer["found"], answer["latest"], answer["yanked"]) == (False, None, False)


@pytest.mark.parametrize(
    "version",
    ["1.0.0", "1.0.0-rc.1", "1.0.0-0", "1.0.0+build-1", "1.0.0-alpha+build-1", "10.2.3-x-y"],
)
def test_the_prerelease_text_rule_is_the_semver_one(version: str) -> None:
    assert is_prerelease_text(version) == is_prerelease(version)
