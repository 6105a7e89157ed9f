"""Batch update checks: for each installed (name, version, fingerprint), the newest release
that is not yanked, not a pre-release and has an artifact for that fingerprint, and whether the
installed version is yanked. One query for the whole batch; the answer is a pure function."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, selectinload

from registry_server.index import artifact_json
from registry_server.models import Artifact, Namespace, Package, Release
from registry_server.schemas import InstalledPatch
from registry_server.versions import version_key

__all__ = ["answer_update", "check_updates", "matching_artifact"]


def _split_name(full_name: str) -> tuple[str, str] | None:
    namespace, slash, name = full_name.partition("/")
    return (namespace, name) if slash and namespace and name and "/" not in name else None


def matching_artifact(release: Release, fingerprint: str) -> Artifact | None:
    """The release's artifact for `fingerprint`, or one whose vendor lists it as compatible."""
    for artifact in release.artifacts:
        if artifact.fingerprint == fingerprint:
            return artifact
    for artifact in release.artifacts:
        compatible = artifact.manifest.get("base_model", {}).get("compatible_fingerprints") or []
        if fingerprint in compatible:
            return artifact
    return None


def answer_update(entry: InstalledPatch, releases: Sequence[Release] | None) -> dict[str, Any]:
    """The answer for one installed patch, given its package's releases (None: no package)."""
    result: dict[str, Any] = {
        "name": entry.name,
        "version": entry.version,
        "fingerprint": entry.fingerprint,
        "found": releases is not None,
        "latest": None,
        "latest_artifact": None,
        "yanked": False,
        "yanked_reason": None,
    }
    if releases is None:
        return result
    for release in releases:
        if release.version == entry.version and release.yanked:
            result["yanked"] = True
            result["yanked_reason"] = release.yanked_reason
    candidates = [
        (release, artifact)
        for release in releases
        if not release.yanked and not release.prerelease
        for artifact in [matching_artifact(release, entry.fingerprint)]
        if artifact is not None
    ]
    if candidates:
        release, artifact = max(candidates, key=lambda pair: version_key(pair[0].version))
        result["latest"] = release.version
        result["latest_artifact"] = artifact_json(artifact)
    return result


def _load_releases(
    session: Session, names: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[Release]]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    packages = session.scalars(
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .where(tuple_(Namespace.name, Package.name).in_(wanted))
        .options(
            selectinload(Package.namespace),
            selectinload(Package.releases).selectinload(Release.artifacts),
        )
    )
    return {(package.namespace.name, package.name): list(package.releases) for package in packages}


def check_updates(session: Session, installed: Sequence[InstalledPatch]) -> list[dict[str, Any]]:
    split = [_split_name(entry.name) for entry in installed]
    releases = _load_releases(session, (parts for parts in split if parts is not None))
    return [
        answer_update(entry, releases.get(parts) if parts is not None else None)
        for entry, parts in zip(installed, split, strict=True)
    ]
