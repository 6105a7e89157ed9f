"""A hand-written oracle for version ranges: each range as the intervals it spans.

Written from npm's documentation, not derived from `patchfmt.VersionRange`, so that property tests
of range matching and of resolution check the code against something other than itself.
"""

from __future__ import annotations

from semantic_version import Version

__all__ = ["INTERVALS", "expected_contains"]

Triple = tuple[int, int, int]
EVERYTHING: list[tuple[Triple, Triple]] = [((0, 0, 0), (10**9, 0, 0))]

# Each range as half-open intervals of `major.minor.patch`. None of them names a pre-release.
INTERVALS: dict[str, list[tuple[Triple, Triple]]] = {
    "": EVERYTHING,
    "latest": EVERYTHING,
    "*": EVERYTHING,
    "1": [((1, 0, 0), (2, 0, 0))],
    "1.2": [((1, 2, 0), (1, 3, 0))],
    "^1.1": [((1, 1, 0), (2, 0, 0))],
    "~2.0.1": [((2, 0, 1), (2, 1, 0))],
    ">=1.0.0 <3": [((1, 0, 0), (3, 0, 0))],
    ">=1.0.0 <3.0.0": [((1, 0, 0), (3, 0, 0))],
    "0.x": [((0, 0, 0), (1, 0, 0))],
    "1.x || 3.x": [((1, 0, 0), (2, 0, 0)), ((3, 0, 0), (4, 0, 0))],
}


def expected_contains(text: str, version: Version, allow_prerelease: bool) -> bool:
    """Whether `version` satisfies range `text` (a key of INTERVALS).

    No range here names a pre-release, so a pre-release is in only with `allow_prerelease`; then
    it is compared as SemVer orders it (1.2.0-rc.1 < 1.2.0, so it is below a lower bound of
    1.2.0), and an upper bound `<X.Y.Z` also excludes X.Y.Z's own pre-releases (npm's `<X.Y.Z-0`).
    The ranges spanning everything take every pre-release.
    """
    triple = (version.major, version.minor, version.patch)
    if version.prerelease and not allow_prerelease:
        return False
    intervals = INTERVALS[text]
    if intervals is EVERYTHING:
        return True
    return any(
        low <= triple < high and not (version.prerelease and triple == low)
        for low, high in intervals
    )
