"""Versions, npm ranges and selection: tables checked against npm's documented semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchfmt import (
    InvalidRangeError,
    InvalidVersionError,
    Version,
    VersionRange,
    parse_version,
    select_version,
)
from tests.patchfmt.range_oracle import INTERVALS, expected_contains


@pytest.mark.parametrize(
    "text", ["0.0.0", "1.2.3", "10.20.30", "1.2.3-rc.1", "1.2.3-alpha.beta.1", "1.0.0+build.7"]
)
def test_valid_versions_parse(text: str) -> None:
    assert str(parse_version(text)) == text


@pytest.mark.parametrize(
    "text", ["1.2", "v1.2.3", "01.2.3", "1.2.3-01", "1.2.3-alpha..1", "", "latest", "1.2.3.4"]
)
def test_invalid_versions_are_refused_naming_the_input(text: str) -> None:
    with pytest.raises(InvalidVersionError, match="SemVer") as caught:
        parse_version(text)
    assert repr(text) in str(caught.value)


def test_overlong_version_is_refused() -> None:
    text = "1.2.3-" + "a" * 200
    with pytest.raises(InvalidVersionError) as caught:
        parse_version(text)
    # The message quotes the first 40 characters, then the length and the limit.
    assert str(caught.value) == f"version {text[:40]!r}... is 206 characters; at most 128"


def test_the_longest_allowed_version_and_range_parse() -> None:
    version = "1.2.3-" + "a" * 122
    assert len(version) == 128 and str(parse_version(version)) == version
    padded = "1.2.3" + " " * 251  # 256 characters: the limit counts what was written
    assert len(padded) == 256 and VersionRange.parse(padded).exact == parse_version("1.2.3")
    with pytest.raises(InvalidRangeError, match="at most 256"):
        VersionRange.parse(padded + " ")


@pytest.mark.parametrize("value", [None, 3, b"1.2.3"])
def test_a_version_or_range_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidVersionError, match="version must be a string, found"):
        parse_version(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidRangeError, match="version range must be a string, found"):
        VersionRange.parse(value)  # type: ignore[arg-type]


def test_the_any_range() -> None:
    any_range = VersionRange.any()
    assert any_range.is_any and str(any_range) == "*" and any_range.exact is None
    assert any_range.contains(parse_version("0.0.1"))
    assert not any_range.contains(parse_version("0.0.1-rc.1"))


@pytest.mark.parametrize(("text", "shown"), [(" ^1.2 ", "^1.2"), ("", "*"), ("latest", "latest")])
def test_a_range_shows_as_written(text: str, shown: str) -> None:
    assert str(VersionRange.parse(text)) == shown


# (range, version, satisfies) as npm's `semver.satisfies` answers.
NPM_TABLE = [
    ("1.2", "1.2.0", True),
    ("1.2", "1.2.9", True),
    ("1.2", "1.3.0", False),
    ("1.2", "1.1.9", False),
    ("1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False),
    ("1.2.3", "1.2.3+build.5", True),
    ("=1.2.3", "1.2.3", True),
    ("^1.2", "1.9.9", True),
    ("^1.2", "2.0.0", False),
    ("^1.2", "1.1.0", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.4", False),
    ("~1.2.3", "1.2.9", True),
    ("~1.2.3", "1.3.0", False),
    ("~1.2", "1.2.0", True),
    (">=1.0.0 <2.0.0", "1.5.0", True),
    (">=1.0.0 <2.0.0", "2.0.0", False),
    ("1.x || >=2.5.0", "2.4.0", False),
    ("1.x || >=2.5.0", "2.5.1", True),
    ("1.2.3 - 2.3.4", "2.3.4", True),
    ("1.2.3 - 2.3.4", "2.3.5", False),
    ("", "0.0.1", True),
    ("*", "7.0.0", True),
    ("latest", "5.0.0", True),
    # Pre-releases: only when a comparator of the same alternative names one of the same
    # major.minor.patch.
    ("*", "1.0.0-rc.1", False),
    ("latest", "1.0.0-rc.1", False),
    ("<2.0.0", "2.0.0-rc.1", False),
    ("<=1.2.3", "1.2.3-rc.1", False),
    ("^1.2", "1.5.0-beta", False),
    (">=1.2.3-alpha.1", "1.2.3-alpha.7", True),
    (">=1.2.3-alpha.1", "3.4.5-alpha.9", False),
    (">=1.2.3-alpha.1", "3.4.5", True),
    ("^1.2.3-beta.2", "1.2.3-beta.4", True),
    ("^1.2.3-beta.2", "1.2.4-beta.2", False),
    ("1.2.3-rc.1", "1.2.3-rc.1", True),
    ("1.2.3-rc.1", "1.2.3-rc.2", False),
]


# Every operator, each on both sides of its boundary, written by hand from npm's docs
# (https://github.com/npm/node-semver#ranges): a `>` that behaved as `>=`, a `<` as `<=`, or a
# dropped `||` alternative each flips at least one row.
OPERATOR_TABLE = [
    (">1.2.0", "1.2.0", False),
    (">1.2.0", "1.2.1", True),
    (">1.2.0", "1.1.9", False),
    (">=1.2.0", "1.2.0", True),
    (">=1.2.0", "1.1.9", False),
    ("<1.2.0", "1.2.0", False),
    ("<1.2.0", "1.1.9", True),
    ("<1.2.0", "1.2.1", False),
    ("<=1.2.0", "1.2.0", True),
    ("<=1.2.0", "1.2.1", False),
    ("<=1.2.0", "0.0.1", True),
    (">1.2", "1.2.9", False),  # a partial version: `>1.2` is `>=1.3.0`
    (">1.2", "1.3.0", True),
    ("<=1.2", "1.2.9", True),  # `<=1.2` is `<1.3.0`
    ("<=1.2", "1.3.0", False),
    (">1.0.0 <1.2.0", "1.0.0", False),
    (">1.0.0 <1.2.0", "1.1.0", True),
    (">1.0.0 <1.2.0", "1.2.0", False),
    ("1.0.0 || 2.0.0", "1.0.0", True),
    ("1.0.0 || 2.0.0", "2.0.0", True),
    ("1.0.0 || 2.0.0", "1.5.0", False),
    ("<1.0.0 || >2.0.0", "0.9.0", True),
    ("<1.0.0 || >2.0.0", "1.0.0", False),
    ("<1.0.0 || >2.0.0", "2.0.0", False),
    ("<1.0.0 || >2.0.0", "2.0.1", True),
    ("^1.2.3", "1.2.3", True),
    ("^1.2.3", "1.2.2", False),
    ("^1.2.3", "1.99.0", True),
    ("^1.2.3", "2.0.0", False),
    ("^0.0.3", "0.0.3", True),
    ("~1.2.3", "1.2.3", True),
    ("~1.2.3", "1.2.2", False),
    ("~1", "1.9.0", True),
    ("~1", "2.0.0", False),
    ("1.x", "1.0.0", True),
    ("1.x", "1.99.99", True),
    ("1.x", "2.0.0", False),
    ("1.x", "0.9.9", False),
    ("1.2.x", "1.2.7", True),
    ("1.2.x", "1.3.0", False),
    ("1.2.*", "1.2.0", True),
    ("x", "9.9.9", True),
    ("1", "1.5.0", True),
    ("1", "2.0.0", False),
    # Pre-releases: excluded unless named on the same major.minor.patch.
    (">1.2.0", "1.2.1-rc.1", False),
    (">1.2.1-rc.1", "1.2.1-rc.2", True),
    (">1.2.1-rc.1", "1.2.1-rc.1", False),
    (">1.2.1-rc.1", "1.2.1", True),
    ("<1.2.1-rc.2", "1.2.1-rc.1", True),
    ("<=1.2.1-rc.2", "1.2.1-rc.2", True),
    ("1.x", "1.5.0-rc.1", False),
    ("~1.2.3-beta.1", "1.2.3-beta.2", True),
    ("~1.2.3-beta.1", "1.2.3", True),
    ("~1.2.3-beta.1", "1.2.4-beta.1", False),
    ("1.2.3-alpha || 2.0.0", "1.2.3-alpha", True),
    ("1.2.3-alpha || 2.0.0", "1.2.3-beta", False),
    ("1.0.0-rc.1", "1.0.0-rc.10", False),
    (">=1.0.0-rc.2", "1.0.0-rc.10", True),  # numeric identifiers compare as numbers
    (">=1.0.0-rc.2", "1.0.0-rc.1", False),
    (">=1.0.0-alpha", "1.0.0-alpha.1", True),  # a longer pre-release ranks higher
    (">1.0.0-beta", "1.0.0-alpha.9", False),
]


@pytest.mark.parametrize(("text", "version", "expected"), OPERATOR_TABLE)
def test_every_operator_on_both_sides_of_its_boundary(
    text: str, version: str, expected: bool
) -> None:
    assert VersionRange.parse(text).contains(parse_version(version)) is expected


@pytest.mark.parametrize(("text", "version", "expected"), NPM_TABLE)
def test_ranges_follow_npm(text: str, version: str, expected: bool) -> None:
    assert VersionRange.parse(text).contains(parse_version(version)) is expected


# npm's `includePrerelease`: pre-releases are compared like releases, except that an upper
# bound `<X.Y.Z` excludes X.Y.Z's own pre-releases (npm desugars `^`, `~` and `1.2` that way).
INCLUDE_PRERELEASE_TABLE = [
    ("*", "1.0.0-rc.1", True),
    ("*", "0.0.0-rc.1", True),
    ("x", "0.0.0-rc.1", True),
    ("X", "0.0.0-rc.1", True),
    ("", "0.0.0-rc.1", True),
    ("latest", "0.0.0-rc.1", True),
    ("^1.2", "1.5.0-beta", True),
    ("^1.2", "2.0.0-rc.1", False),
    ("1.2", "1.2.0-beta", False),
    ("1.2", "1.2.5-beta", True),
    ("~1.2.3", "1.3.0-alpha", False),
    ("<2.0.0", "2.0.0-rc.1", False),
    ("<=2.0.0", "2.0.0-rc.1", True),
]


@pytest.mark.parametrize(("text", "version", "expected"), INCLUDE_PRERELEASE_TABLE)
def test_include_prerelease(text: str, version: str, expected: bool) -> None:
    version_range = VersionRange.parse(text)
    assert version_range.contains(parse_version(version), include_prerelease=True) is expected


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("1.2.3", "1.2.3"),
        ("=1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.2.3-rc.1", "1.2.3-rc.1"),
        ("1.2", None),
        ("^1.2.3", None),
        ("~1.2.3", None),
        (">=1.2.3", None),
        ("1.2.3 || 1.2.4", None),
        ("", None),
        ("latest", None),
    ],
)
def test_exact_is_set_only_for_a_pin(text: str, exact: str | None) -> None:
    found = VersionRange.parse(text).exact
    assert (None if found is None else str(found)) == exact


@pytest.mark.parametrize(
    "text", ["abc", ">=", "1.2.3.4", "~>1.2", "^", "1.2.3 ||| 2", "!=1.2.0", "x" * 300]
)
def test_invalid_ranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidRangeError) as caught:
        VersionRange.parse(text)
    assert repr(text[:40]) in str(caught.value) or repr(text) in str(caught.value)
    if len(text) <= 256:  # a range that is only malformed says what a good one looks like
        assert "such as '1.2', '1.2.3', '^1.2', '~1.2.3', '>=1.0.0 <2.0.0', '*' or 'latest'" in (
            str(caught.value)
        )


CANDIDATES = [
    ("1.0.0", False),
    ("1.2.0", False),
    ("1.2.1", True),
    ("1.3.0-rc.1", False),
    ("2.0.0", False),
    ("2.1.0-beta", False),
    ("3.0.0", True),
]


@pytest.mark.parametrize(
    ("text", "allow_prerelease", "expected"),
    [
        ("", False, "2.0.0"),
        ("latest", False, "2.0.0"),
        ("", True, "2.1.0-beta"),
        ("1.2", False, "1.2.0"),  # 1.2.1 is yanked
        ("1.2.1", False, "1.2.1"),  # pinned exactly: a yanked version is still installable
        ("3", False, None),  # only a yanked release matches
        ("3.0.0", False, "3.0.0"),
        ("^1.0", False, "1.2.0"),
        ("^1.0", True, "1.3.0-rc.1"),
        ("^1.3.0-rc.1", False, "1.3.0-rc.1"),
        ("1.3.0-rc.1", False, "1.3.0-rc.1"),
        ("~1.0.0", False, "1.0.0"),
        ("9.9.9", False, None),
        (">=4", False, None),
    ],
)
def test_select_version(text: str, allow_prerelease: bool, expected: str | None) -> None:
    candidates = [(parse_version(v), yanked) for v, yanked in CANDIDATES]
    chosen = select_version(candidates, VersionRange.parse(text), allow_prerelease=allow_prerelease)
    assert (None if chosen is None else str(chosen)) == expected


def test_select_version_of_nothing_is_none() -> None:
    assert select_version([], VersionRange.parse("")) is None


def test_select_version_skips_pre_releases_unless_asked() -> None:
    candidates = [(parse_version("1.0.0"), False), (parse_version("1.1.0-rc.1"), False)]
    assert str(select_version(candidates, VersionRange.parse("^1.0"))) == "1.0.0"


versions = st.builds(
    lambda major, minor, patch, pre: Version(major=major, minor=minor, patch=patch, prerelease=pre),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([(), ("rc", "1"), ("alpha",)]),
)
EXACT = "2.1.0"


ranges = st.sampled_from([*INTERVALS, EXACT])


@given(st.lists(st.tuples(versions, st.booleans()), max_size=12), ranges, st.booleans())
def test_selection_is_the_highest_eligible_candidate(
    candidates: list[tuple[Version, bool]], text: str, allow_prerelease: bool
) -> None:
    chosen = select_version(candidates, VersionRange.parse(text), allow_prerelease=allow_prerelease)
    if text == EXACT:  # a pin: that version, even yanked
        pinned = [v for v, _ in candidates if str(v) == EXACT]
        assert chosen == (max(pinned) if pinned else None)
        return
    eligible = [
        v for v, yanked in candidates if not yanked and expected_contains(text, v, allow_prerelease)
    ]
    assert chosen == (max(eligible) if eligible else None)


@given(versions, st.sampled_from(list(INTERVALS)), st.booleans())
def test_contains_agrees_with_the_hand_written_intervals(
    version: Version, text: str, allow_prerelease: bool
) -> None:
    found = VersionRange.parse(text).contains(version, include_prerelease=allow_prerelease)
    assert found is expected_contains(text, version, allow_prerelease)


@given(versions)
def test_version_text_round_trips(version: Version) -> None:
    assert parse_version(str(version)) == version
