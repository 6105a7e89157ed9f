"""Package indexes: the JSON of `GET /api/v1/packages/{ns}/{name}`, its ETag, and conditional
requests. The ETag is the package's `index_etag` column, renewed by every write to the package,
so answering `If-None-Match` costs one indexed lookup (registry_server.polling) and no JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from patchfmt.blob_paths import blob_url
from patchfmt.versions import version_sort_key
from registry_server.models import Namespace, Package, Release

__all__ = ["artifact_json", "build_index", "etag_matches", "quoted_etag"]


def quoted_etag(value: str) -> str:
    return f'"{value}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 `If-None-Match`: `*`, or any listed tag equal to `etag` under weak comparison."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(",")
    )


def artifact_json(artifact: Any) -> dict[str, Any]:
    return {
        "fingerprint": artifact.fingerprint,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "url": blob_url(artifact.sha256),
        "filename": artifact.filename,
        "key_id": artifact.key_id,
    }


def _timestamp(value: Any) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    text: str = value.replace(tzinfo=None).isoformat(timespec="seconds")
    return text + "Z"


def build_index(session: Session, namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The index JSON and its ETag, or None when there is no such package. Newest release first."""
    package = session.scalar(
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .where(Namespace.name == namespace, Package.name == name)
        .options(selectinload(Package.releases).selectinload(Release.artifacts))
    )
    if package is None:
        return None
    releases = sorted(
        package.releases, key=lambda release: version_sort_key(release.version), reverse=True
    )
    body = {
        "namespace": namespace,
        "name": name,
        "domain": package.domain,
        "summary": package.summary,
        "releases": [
            {
                "version": release.version,
                "yanked": release.yanked,
                "yanked_reason": release.yanked_reason,
                "created": _timestamp(release.created_at),
                "artifacts": [
                    artifact_json(artifact)
                    for artifact in sorted(release.artifacts, key=lambda a: a.fingerprint)
                ],
            }
            for release in releases
        ],
    }
    return body, quoted_etag(package.index_etag)
