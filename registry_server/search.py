"""Finding packages: text in the name, namespace or summary; domain; base-model fingerprint;
exact package name across namespaces (how the client resolves a bare name).

Anonymous and cheap whatever publishers upload: it reads only the small columns it answers
with (never an artifact's manifest), one page of packages at a time, in three queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from patchfmt.versions import version_sort_key
from registry_server.models import Artifact, Namespace, Package, Release

__all__ = ["MAX_SEARCH_OFFSET", "MAX_SEARCH_RESULTS", "latest_version", "search_packages"]

# The most packages one search answers, and how far a search may page (docs/registry.md).
MAX_SEARCH_RESULTS = 200
MAX_SEARCH_OFFSET = 100_000


class VersionFacts(Protocol):
    @property
    def version(self) -> str: ...
    @property
    def yanked(self) -> bool: ...
    @property
    def prerelease(self) -> bool: ...


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def latest_version(releases: Iterable[VersionFacts]) -> str | None:
    """The newest release that is neither yanked nor a pre-release."""
    candidates = [r.version for r in releases if not r.yanked and not r.prerelease]
    return max(candidates, key=version_sort_key) if candidates else None


def search_packages(
    session: Session,
    *,
    text: str,
    domain: str,
    fingerprint: str,
    name: str,
    limit: int,
    offset: int = 0,
) -> list[dict[str, Any]]:
    statement = (
        select(
            Package.id,
            Namespace.name.label("namespace"),
            Package.name,
            Package.domain,
            Package.summary,
        )
        .join(Namespace, Package.namespace_id == Namespace.id)
        .order_by(Namespace.name, Package.name)
        .limit(min(limit, MAX_SEARCH_RESULTS))
        .offset(min(offset, MAX_SEARCH_OFFSET))
    )
    if text.strip():
        pattern = _like_pattern(text.strip())
        statement = statement.where(
            or_(
                Package.name.like(pattern, escape="\\"),
                Namespace.name.like(pattern, escape="\\"),
                func.lower(Package.summary).like(pattern, escape="\\"),
            )
        )
    if domain:
        statement = statement.where(Package.domain == domain)
    if name:
        statement = statement.where(Package.name == name)
    if fingerprint:
        with_fingerprint = (
            select(Release.package_id)
            .join(Artifact, Artifact.release_id == Release.id)
            .where(Artifact.fingerprint == fingerprint)
        )
        statement = statement.where(Package.id.in_(with_fingerprint))
    packages = session.execute(statement).all()
    ids = [package.id for package in packages]
    releases: dict[int, list[Any]] = defaultdict(list)
    for release in session.execute(
        select(Release.package_id, Release.version, Release.yanked, Release.prerelease).where(
            Release.package_id.in_(ids)
        )
    ):
        releases[release.package_id].append(release)
    fingerprints: dict[int, list[str]] = defaultdict(list)
    for package_id, found in session.execute(
        select(Release.package_id, Artifact.fingerprint)
        .distinct()
        .join(Artifact, Artifact.release_id == Release.id)
        .where(Release.package_id.in_(ids), Release.yanked.is_(False))
        .order_by(Release.package_id, Artifact.fingerprint)
    ):
        fingerprints[package_id].append(found)
    return [
        {
            "namespace": package.namespace,
            "name": package.name,
            "domain": package.domain,
            "summary": package.summary,
            "latest_version": latest_version(releases[package.id]),
            "fingerprints": fingerprints[package.id],
        }
        for package in packages
    ]
