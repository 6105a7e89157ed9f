"""Finding packages: text in the name, namespace or summary; domain; base-model fingerprint;
exact package name across namespaces (how the client resolves a bare name)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from patchfmt.versions import version_sort_key
from registry_server.models import Artifact, Namespace, Package, Release

__all__ = ["latest_version", "search_packages"]


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def latest_version(releases: list[Release]) -> str | None:
    """The newest release that is neither yanked nor a pre-release."""
    candidates = [r.version for r in releases if not r.yanked and not r.prerelease]
    return max(candidates, key=version_sort_key) if candidates else None


def search_packages(
    session: Session, *, text: str, domain: str, fingerprint: str, name: str, limit: int
) -> list[dict[str, Any]]:
    statement = (
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .options(
            selectinload(Package.namespace),
            selectinload(Package.releases).selectinload(Release.artifacts),
        )
        .order_by(Namespace.name, Package.name)
        .limit(limit)
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
    results = []
    for package in session.scalars(statement):
        live = [release for release in package.releases if not release.yanked]
        results.append(
            {
                "namespace": package.namespace.name,
                "name": package.name,
                "domain": package.domain,
                "summary": package.summary,
                "latest_version": latest_version(package.releases),
                "fingerprints": sorted(
                    {artifact.fingerprint for release in live for artifact in release.artifacts}
                ),
            }
        )
    return results
