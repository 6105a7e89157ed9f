"""Batch update checks: for each installed (name, version, fingerprint), the newest release
that is not yanked, not a pre-release and has an artifact for that fingerprint, and whether the
installed version is yanked.

The polling path of every deployment, so it is built for speed: one Core query (no ORM objects)
for the whole batch, a second only when an entry has no exact fingerprint match and the vendors'
lists of compatible fingerprints must be read; the answer itself is a pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from patchfmt.blob_paths import blob_url
from patchfmt.versions import version_sort_key
from registry_server.models import Artifact, Namespace, Package, Release
from registry_server.schemas import InstalledPatch

__all__ = ["ArtifactView", "ReleaseView", "answer_update", "check_updates"]


@dataclass(frozen=True)
class ArtifactView:
    fingerprint: str
    sha256: str
    size: int
    filename: str
    key_id: str
    compatible: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "sha256": self.sha256,
            "size": self.size,
            "url": blob_url(self.sha256),
            "filename": self.filename,
            "key_id": self.key_id,
        }


@dataclass
class ReleaseView:
    version: str
    yanked: bool
    yanked_reason: str | None
    prerelease: bool
    artifacts: list[ArtifactView] = field(default_factory=list)

    def artifact_for(self, fingerprint: str) -> ArtifactView | None:
        """The artifact for `fingerprint`, or one whose vendor lists it as compatible."""
        exact = next((a for a in self.artifacts if a.fingerprint == fingerprint), None)
        return exact or next((a for a in self.artifacts if fingerprint in a.compatible), None)


def _split_name(full_name: str) -> tuple[str, str] | None:
    namespace, slash, name = full_name.partition("/")
    return (namespace, name) if slash and namespace and name and "/" not in name else None


def answer_update(entry: InstalledPatch, releases: Sequence[ReleaseView] | None) -> dict[str, Any]:
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
        for artifact in [release.artifact_for(entry.fingerprint)]
        if artifact is not None
    ]
    if candidates:
        release, artifact = max(candidates, key=lambda pair: version_sort_key(pair[0].version))
        result["latest"] = release.version
        result["latest_artifact"] = artifact.json()
    return result


_Key = tuple[str, str]


def _load_releases(
    session: Session, names: Iterable[_Key], fingerprints: set[str]
) -> dict[_Key, list[ReleaseView]]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Namespace.name,
            Package.name,
            Release.id,
            Release.version,
            Release.yanked,
            Release.yanked_reason,
            Release.prerelease,
            Artifact.id,
            Artifact.fingerprint,
            Artifact.sha256,
            Artifact.size,
            Artifact.filename,
            Artifact.key_id,
        )
        .join(Package, Package.namespace_id == Namespace.id)
        .join(Release, Release.package_id == Package.id)
        .outerjoin(Artifact, Artifact.release_id == Release.id)
        .where(tuple_(Namespace.name, Package.name).in_(wanted))
    ).all()
    packages: dict[_Key, dict[int, ReleaseView]] = {}
    artifact_ids: dict[int, tuple[ReleaseView, int]] = {}
    for (ns, name, release_id, version, yanked, reason, pre, artifact_id, fp, sha, size,
         filename, key_id) in rows:  # fmt: skip
        releases = packages.setdefault((ns, name), {})
        release = releases.get(release_id)
        if release is None:
            release = releases[release_id] = ReleaseView(version, yanked, reason, pre)
        if artifact_id is not None:
            release.artifacts.append(ArtifactView(fp, sha, size, filename, key_id))
            artifact_ids[artifact_id] = (release, len(release.artifacts) - 1)
    present = {a.fingerprint for r in packages.values() for v in r.values() for a in v.artifacts}
    if fingerprints - present and artifact_ids:
        # Some installed fingerprint has no artifact of its own: read the compatible lists.
        manifests = session.execute(
            select(Artifact.id, Artifact.manifest).where(Artifact.id.in_(list(artifact_ids)))
        )
        for artifact_id, manifest in manifests:
            compatible = (manifest.get("base_model") or {}).get("compatible_fingerprints") or []
            if compatible:
                release, position = artifact_ids[artifact_id]
                old = release.artifacts[position]
                release.artifacts[position] = ArtifactView(
                    old.fingerprint, old.sha256, old.size, old.filename, old.key_id,
                    tuple(compatible),
                )  # fmt: skip
    return {key: list(releases.values()) for key, releases in packages.items()}


def check_updates(session: Session, installed: Sequence[InstalledPatch]) -> list[dict[str, Any]]:
    split = [_split_name(entry.name) for entry in installed]
    releases = _load_releases(
        session,
        (parts for parts in split if parts is not None),
        {entry.fingerprint for entry in installed},
    )
    return [
        answer_update(entry, releases.get(parts) if parts is not None else None)
        for entry, parts in zip(installed, split, strict=True)
    ]
