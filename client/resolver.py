"""Resolution: a pure function from (spec, package indexes, model fingerprint) to a pin.

No network, no disk: the caller fetches the indexes (and, for suggestions, the names a search
found) and passes them in, so every rule here is tested with plain dicts
(tests/client/test_resolver.py). Version ranges follow npm via `patchfmt.VersionRange`;
pre-releases are considered only when asked for; yanked releases are skipped unless the range
pins that exact version, which resolves with a warning (PEP 592).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ppatch.errors import NotFoundError, UsageError, VerificationError

# `patchfmt.versions` imports `semantic_version`, which costs ~40 ms at start-up; `ppatch
# outdated` imports this module (through `ppatch.install`) for `Pin` but resolves nothing, so the
# functions that parse versions import it when they run.
if TYPE_CHECKING:
    from patchfmt.names import PackageSpec
    from patchfmt.versions import VersionRange

__all__ = [
    "AmbiguousPackageError",
    "NoArtifactError",
    "NoMatchingVersionError",
    "PackageSubstitutedError",
    "Pin",
    "Resolution",
    "UnknownPackageError",
    "as_range",
    "resolve",
]

Index = Mapping[str, Any]


class UnknownPackageError(NotFoundError):
    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown package {name!r}{hint}")
        self.name = name
        self.suggestions = list(suggestions)


class NoMatchingVersionError(NotFoundError):
    def __init__(self, name: str, range_text: str, available: Sequence[str]) -> None:
        listing = ", ".join(available) if available else "none"
        super().__init__(f"no release of {name!r} matches {range_text!r} (available: {listing})")
        self.name = name
        self.range = range_text
        self.available = list(available)


class NoArtifactError(NotFoundError):
    """Releases match the range, but none was built for this model."""

    def __init__(self, name: str, range_text: str, fingerprint: str, existing: Sequence[str]):
        listing = ", ".join(existing) if existing else "none"
        super().__init__(
            f"{name}@{range_text} has no artifact for this model (fingerprint {fingerprint}); "
            f"artifacts exist for: {listing}"
        )
        self.name = name
        self.range = range_text
        self.fingerprint = fingerprint
        self.existing = list(existing)


class AmbiguousPackageError(UsageError):
    def __init__(self, name: str, candidates: Sequence[str]) -> None:
        super().__init__(
            f"{name!r} is ambiguous: {', '.join(candidates)} all have a release for this model; "
            "name one with its namespace"
        )
        self.name = name
        self.candidates = list(candidates)


class PackageSubstitutedError(VerificationError):
    """The registry answered a package index for another package than the one asked for."""

    def __init__(self, requested: str, answered: str) -> None:
        super().__init__(
            f"asked the registry for {requested} but it answered with the index of {answered}; "
            "refusing it (a registry or proxy substituting packages)"
        )
        self.requested = requested
        self.answered = answered


@dataclass(frozen=True)
class Pin:
    """One exact artifact to install."""

    namespace: str
    name: str
    version: str
    fingerprint: str
    sha256: str
    size: int
    url: str
    filename: str
    key_id: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resolution:
    pin: Pin
    warnings: tuple[str, ...] = ()


def as_range(value: VersionRange | str | None) -> VersionRange:
    """A range as a `VersionRange`; no range means the highest release."""
    from patchfmt.versions import VersionRange

    if isinstance(value, VersionRange):
        return value
    return VersionRange.parse(value or "latest")


def _range_text(spec: PackageSpec) -> str:
    return spec.range.text or "latest"


def _releases(index: Index) -> list[tuple[Any, Mapping[str, Any]]]:
    """(parsed version, release) pairs, highest first; unparsable versions are ignored."""
    from patchfmt.versions import parse_version

    parsed = []
    for release in index.get("releases", []):
        try:
            parsed.append((parse_version(str(release["version"])), release))
        except (KeyError, ValueError):
            continue
    parsed.sort(key=_by_version, reverse=True)
    return parsed


def _by_version(pair: tuple[Any, Mapping[str, Any]]) -> Any:
    from patchfmt.versions import version_sort_key

    return version_sort_key(str(pair[1]["version"]))


def _artifact_for(release: Mapping[str, Any], fingerprint: str) -> Mapping[str, Any] | None:
    for artifact in release.get("artifacts", []):
        if artifact.get("fingerprint") == fingerprint:
            return artifact  # type: ignore[no-any-return]
    return None


def _pin(full_name: str, release: Mapping[str, Any], artifact: Mapping[str, Any]) -> Pin:
    namespace, name = full_name.split("/", 1)
    return Pin(
        namespace=namespace,
        name=name,
        version=str(release["version"]),
        fingerprint=str(artifact["fingerprint"]),
        sha256=str(artifact["sha256"]),
        size=int(artifact["size"]),
        url=str(artifact["url"]),
        filename=str(artifact.get("filename") or f"{name}-{release['version']}.ppatch"),
        key_id=artifact.get("key_id"),
        yanked=bool(release.get("yanked")),
        yanked_reason=release.get("yanked_reason"),
    )


def _resolve_in(
    full_name: str,
    index: Index,
    version_range: VersionRange,
    range_text: str,
    fingerprint: str,
    allow_prerelease: bool,
) -> Resolution:
    from patchfmt.versions import select_version, version_sort_key

    # The name comes from the request (the key of `indexes`), never from the answer: the pinned
    # keys, the installed name and the blob identity check all follow it.
    answered = f"{index.get('namespace')}/{index.get('name')}"
    if answered != full_name:
        raise PackageSubstitutedError(full_name, answered)
    releases = _releases(index)
    exact = version_range.exact
    if exact is not None:
        # An exact pin names one release: taken even when yanked (with a warning) or a
        # pre-release, as pip does for `==`. Compared without build metadata, which SemVer
        # ignores for precedence (`exact` has none): `1.2.0` and `1.2.0+b1` name the same
        # release, as they do for `select_version`.
        matching = [
            (version, release)
            for version, release in releases
            if version_sort_key(str(release["version"]))[0] == exact
        ]
        if not matching:
            raise NoMatchingVersionError(full_name, range_text, _listing(releases))
        _, release = matching[0]
        artifact = _artifact_for(release, fingerprint)
        if artifact is None:
            raise NoArtifactError(full_name, range_text, fingerprint, _fingerprints(releases))
        warnings: tuple[str, ...] = ()
        if release.get("yanked"):
            reason = release.get("yanked_reason") or "no reason given"
            warnings = (f"{full_name} {release['version']} is yanked: {reason}",)
        return Resolution(_pin(full_name, release, artifact), warnings)

    by_version = {version: release for version, release in releases}
    for_model = [
        (version, bool(release.get("yanked")))
        for version, release in releases
        if _artifact_for(release, fingerprint) is not None
    ]
    chosen = select_version(for_model, version_range, allow_prerelease=allow_prerelease)
    if chosen is not None:
        release = by_version[chosen]
        artifact = _artifact_for(release, fingerprint)
        assert artifact is not None  # for_model only holds releases with one
        return Resolution(_pin(full_name, release, artifact))
    any_model = [(version, bool(release.get("yanked"))) for version, release in releases]
    if select_version(any_model, version_range, allow_prerelease=allow_prerelease) is None:
        raise NoMatchingVersionError(full_name, range_text, _listing(releases))
    raise NoArtifactError(full_name, range_text, fingerprint, _fingerprints(releases))


def _listing(releases: Iterable[tuple[Any, Mapping[str, Any]]]) -> list[str]:
    shown = []
    for _, release in sorted(releases, key=_by_version):
        suffix = " (yanked)" if release.get("yanked") else ""
        shown.append(f"{release['version']}{suffix}")
    return shown


def _fingerprints(releases: Iterable[tuple[Any, Mapping[str, Any]]]) -> list[str]:
    found: dict[str, list[str]] = {}
    for _, release in sorted(releases, key=_by_version):
        for artifact in release.get("artifacts", []):
            found.setdefault(str(artifact.get("fingerprint")), []).append(str(release["version"]))
    return [f"{fp} ({', '.join(versions)})" for fp, versions in sorted(found.items())]


def _suggest(wanted: str, known_names: Sequence[str], *, bare: bool) -> list[str]:
    """Close full names; a bare name is compared with the names without their namespace."""
    if not bare:
        return difflib.get_close_matches(wanted, list(known_names), n=3, cutoff=0.6)
    by_short: dict[str, list[str]] = {}
    for full in known_names:
        by_short.setdefault(full.split("/", 1)[-1], []).append(full)
    close = difflib.get_close_matches(wanted, list(by_short), n=3, cutoff=0.6)
    return [full for short in close for full in sorted(by_short[short])]


def resolve(
    spec: PackageSpec | str,
    indexes: Mapping[str, Index],
    fingerprint: str,
    *,
    allow_prerelease: bool = False,
    known_names: Sequence[str] = (),
) -> Resolution:
    """Pick the artifact of `spec` to install on the model with `fingerprint`.

    `indexes` maps `namespace/name` to that package's index: for a spec with a namespace, its
    own index (absent when the registry does not know it); for a bare name, every package of
    that name across namespaces. Each key is the package the caller asked the registry for; an
    index that names another package raises `PackageSubstitutedError`. `known_names` (from a
    search) feeds the suggestions of `UnknownPackageError`.
    """
    if isinstance(spec, str):
        from patchfmt.names import PackageSpec

        spec = PackageSpec.parse(spec)
    version_range = spec.range
    range_text = _range_text(spec)
    wanted = f"{spec.namespace}/{spec.name}" if spec.namespace else spec.name
    if spec.namespace:
        candidates = {wanted: indexes[wanted]} if wanted in indexes else {}
    else:
        candidates = {
            full: index for full, index in indexes.items() if full.split("/", 1)[-1] == spec.name
        }
    if not candidates:
        suggestions = _suggest(wanted, known_names, bare=not spec.namespace)
        raise UnknownPackageError(wanted, suggestions)

    resolved: dict[str, Resolution] = {}
    failures: dict[str, NotFoundError] = {}
    for full_name, index in sorted(candidates.items()):
        try:
            resolved[full_name] = _resolve_in(
                full_name, index, version_range, range_text, fingerprint, allow_prerelease
            )
        except NotFoundError as error:
            failures[full_name] = error
    if len(resolved) == 1:
        return next(iter(resolved.values()))
    if len(resolved) > 1:
        raise AmbiguousPackageError(spec.name, sorted(resolved))
    if len(failures) == 1:
        raise next(iter(failures.values()))
    # Several namespaces have the name, none has it for this model and range. Each listed
    # item names its namespace: the same fingerprint or version may be in several.
    where = f"{spec.name} (in {', '.join(sorted(failures))})"
    ordered = sorted(failures.items())
    no_match = [(full, e) for full, e in ordered if isinstance(e, NoMatchingVersionError)]
    if len(no_match) == len(failures):
        available = [f"{full} {version}" for full, e in no_match for version in e.available]
        raise NoMatchingVersionError(where, range_text, available)
    existing = [
        f"{full} {item}"
        for full, e in ordered
        if isinstance(e, NoArtifactError)
        for item in e.existing
    ]
    raise NoArtifactError(where, range_text, fingerprint, existing)
