"""SemVer 2.0 versions and npm-style ranges, on top of `semantic_version`.

Ranges are parsed by `semantic_version.NpmSpec` (no hand-written grammar). Matching applies npm's
pre-release rule on top of it, because `NpmSpec` alone lets `<2.0.0` match `2.0.0-rc.1` where npm
does not: a pre-release version satisfies a range only if one comparator of the same `||`
alternative names a pre-release of the same `major.minor.patch`, unless pre-releases are asked for.
When they are asked for (npm's `includePrerelease`), an upper bound `<X.Y.Z` also excludes the
pre-releases of `X.Y.Z`, as npm's own desugaring (`<X.Y.Z-0`) of `^`, `~` and X-ranges does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from semantic_version import NpmSpec, Version
from semantic_version import base as _sv

from patchfmt.errors import InvalidRangeError, InvalidVersionError

__all__ = [
    "MAX_RANGE_LENGTH",
    "MAX_VERSION_LENGTH",
    "Version",
    "VersionRange",
    "is_prerelease",
    "parse_version",
    "select_version",
    "version_sort_key",
]

MAX_VERSION_LENGTH = 128
MAX_RANGE_LENGTH = 256

_Comparator = tuple[str, Version]


def parse_version(text: str) -> Version:
    """Parse a strict SemVer 2.0 version (`1.2.3`, `1.2.3-rc.1+build.5`; no `v`, no `1.2`)."""
    if not isinstance(text, str):
        raise InvalidVersionError(f"version must be a string, found {text!r}")
    if len(text) > MAX_VERSION_LENGTH:
        raise InvalidVersionError(
            f"version {text[:40]!r}... is {len(text)} characters; at most {MAX_VERSION_LENGTH}"
        )
    try:
        return Version(text)
    except ValueError as error:
        raise InvalidVersionError(
            f"invalid version {text!r}: expected SemVer 2.0 such as '1.2.3' or '1.2.3-rc.1' "
            f"({error})"
        ) from None


def _release_key(version: Version) -> Version:
    """The version without build metadata, which SemVer ignores for precedence."""
    return Version(
        major=version.major,
        minor=version.minor,
        patch=version.patch,
        prerelease=version.prerelease,
    )


@functools.lru_cache(maxsize=8192)
def version_sort_key(text: str) -> tuple[Version, str]:
    """The one sort key for version strings, on the server and the client: SemVer precedence
    (build metadata does not count), then the text, so versions that differ only in build
    metadata still sort in one stable order. Cached: the same few versions sort on every poll."""
    return _release_key(parse_version(text)), text


@functools.lru_cache(maxsize=8192)
def is_prerelease(text: str) -> bool:
    """True for a version with a pre-release part (`1.0.0-rc.1`)."""
    return bool(parse_version(text).prerelease)


def _same_release(left: Version, right: Version) -> bool:
    return (left.major, left.minor, left.patch) == (right.major, right.minor, right.patch)


def _alternatives(clause: _sv.Clause) -> list[list[_Comparator]] | None:
    """Flatten NpmSpec's clause tree into `||` alternatives of comparators; None means 'any'."""
    if isinstance(clause, _sv.Always):
        return None
    if isinstance(clause, _sv.Never):
        return []
    if isinstance(clause, _sv.AnyOf):
        result: list[list[_Comparator]] = []
        for sub in clause.clauses:
            flat = _alternatives(sub)
            if flat is None:
                return None
            result.extend(flat)
        return result
    if isinstance(clause, _sv.AllOf):
        comparators: list[_Comparator] = []
        for sub in clause.clauses:
            if isinstance(sub, _sv.Always):
                continue
            if isinstance(sub, _sv.Never):
                return []
            if not isinstance(sub, _sv.Range):
                raise TypeError(f"unexpected clause {sub!r}")
            comparators.append((sub.operator, _release_key(sub.target)))
        return [comparators]
    if isinstance(clause, _sv.Range):
        return [[(clause.operator, _release_key(clause.target))]]
    raise TypeError(f"unexpected clause {clause!r}")


def _compare(version: Version, operator: str, target: Version) -> bool:
    if operator == "<":
        if version.prerelease and not target.prerelease and _same_release(version, target):
            return False  # `<X.Y.Z` means `<X.Y.Z-0`
        return bool(version < target)
    if operator == "<=":
        return bool(version <= target)
    if operator == ">":
        return bool(version > target)
    if operator == ">=":
        return bool(version >= target)
    if operator == "==":
        return bool(version == target)
    if operator == "!=":
        return bool(version != target)
    raise TypeError(f"unexpected operator {operator!r}")


def _pinned(text: str) -> Version | None:
    """The version a range names exactly (`1.2.3`, `=1.2.3`, `v1.2.3-rc.1`), else None."""
    candidate = text.removeprefix("=").strip().removeprefix("v")
    try:
        return _release_key(Version(candidate))
    except ValueError:
        return None


@dataclass(frozen=True)
class VersionRange:
    """An npm-style range: `text` as written; `exact` is set when it pins one version."""

    text: str
    exact: Version | None = field(compare=False)
    _alternatives: list[list[_Comparator]] | None = field(compare=False, repr=False)

    @classmethod
    def any(cls) -> VersionRange:
        return cls.parse("")

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse `1.2`, `1.2.3`, `^1.2`, `~1.2.3`, `>=1.0 <2`, `a || b`, `*`, `latest` or ``."""
        if not isinstance(text, str):
            raise InvalidRangeError(f"version range must be a string, found {text!r}")
        if len(text) > MAX_RANGE_LENGTH:
            raise InvalidRangeError(
                f"version range {text[:40]!r}... is {len(text)} characters; "
                f"at most {MAX_RANGE_LENGTH}"
            )
        stripped = text.strip()
        spec_text = "*" if stripped in ("", "latest") else stripped
        try:
            spec = NpmSpec(spec_text)
        except ValueError:
            raise InvalidRangeError(
                f"invalid version range {text!r}: expected an npm range such as '1.2', "
                "'1.2.3', '^1.2', '~1.2.3', '>=1.0.0 <2.0.0', '*' or 'latest'"
            ) from None
        # NpmSpec reads `*` as `>=0.0.0`, which would keep 0.0.0's own pre-releases out even
        # when pre-releases are asked for; npm's `*` accepts every version.
        alternatives = None if spec_text in ("*", "x", "X") else _alternatives(spec.clause)
        return cls(text=stripped, exact=_pinned(stripped), _alternatives=alternatives)

    @property
    def is_any(self) -> bool:
        return self._alternatives is None or self.text in ("", "*", "latest")

    def contains(self, version: Version, *, include_prerelease: bool = False) -> bool:
        """npm's `satisfies(version, range, {includePrerelease})`."""
        candidate = _release_key(version)
        if self._alternatives is None:
            return include_prerelease or not candidate.prerelease
        for comparators in self._alternatives:
            if not all(_compare(candidate, op, target) for op, target in comparators):
                continue
            if (
                not candidate.prerelease
                or include_prerelease
                or any(
                    target.prerelease and _same_release(target, candidate)
                    for _, target in comparators
                )
            ):
                return True
        return False

    def __str__(self) -> str:
        return self.text or "*"


def select_version(
    candidates: Iterable[tuple[Version, bool]],
    range: VersionRange,  # the name docs/architecture.md gives
    *,
    allow_prerelease: bool = False,
) -> Version | None:
    """The highest candidate the range accepts, or None.

    `candidates` are `(version, yanked)`. Yanked versions are skipped unless the range pins that
    version exactly (PEP 592); pre-releases are skipped unless `allow_prerelease` or the range
    names a pre-release of the same `major.minor.patch` (npm). Pure: no I/O.
    """
    pool = list(candidates)
    if range.exact is not None:
        pinned = [v for v, _ in pool if _release_key(v) == range.exact]
        return max(pinned, default=None)
    accepted = [
        version
        for version, yanked in pool
        if not yanked and range.contains(version, include_prerelease=allow_prerelease)
    ]
    return max(accepted, default=None)
