"""HTML pages for people: `/` (the package list, with search) and `/p/{ns}/{name}`.

Jinja2 templates with autoescaping on, so a package summary can never inject markup. Pages read
only what they show: the package list reads no manifest at all, a package page reads the
manifest of the one artifact whose evaluation it shows (and keeps the small view of it it
needs, for the next reader); both are paged or capped
(docs/registry.md, "Limits"). No script or style is inline (the CSP forbids it): they are files
under `static/`. Both pages' answers are kept by `registry_server.response_cache` until the next
change to the registry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from patchfmt.versions import version_sort_key
from registry_server.api.deps import NamespaceName, PackageName, RegistryDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.evaluation_view import (
    MeasureTable,
    TrainingFacts,
    evaluation_tables,
    training_facts,
)
from registry_server.models import Artifact, Namespace, Package, Release, SigningKey
from registry_server.search import search_packages

__all__ = ["PAGE_SIZE", "VERSIONS_SHOWN", "router", "templates"]

PAGE_SIZE = 50  # packages per page of the list
MAX_PAGE = 2000
VERSIONS_SHOWN = 100  # newest versions on a package page; yanked ones are always named

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)


def _render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(template).render(**context), status_code=status)


def _page_link(q: str, domain: str, page: int) -> str:
    query = {key: value for key, value in (("q", q), ("domain", domain)) if value}
    if page > 1:
        query["page"] = str(page)
    return "/?" + urlencode(query) if query else "/"


@router.get("/", response_class=HTMLResponse)
def package_list(
    registry: RegistryDep,
    q: Annotated[str, Query()] = "",
    domain: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    if len(q) > registry.settings.max_query_length:
        raise RegistryError(ErrorCode.INVALID_REQUEST, "search text is too long")
    with registry.sessions() as session:  # not SessionDep: see package_page
        found = search_packages(
            session,
            text=q,
            domain=domain,
            fingerprint="",
            name="",
            limit=PAGE_SIZE + 1,  # one more tells whether a next page exists
            offset=(page - 1) * PAGE_SIZE,
        )
    return _render(
        "index.html",
        packages=found[:PAGE_SIZE],
        q=q,
        domain=domain,
        page=page,
        previous_page=_page_link(q, domain, page - 1) if page > 1 else None,
        next_page=_page_link(q, domain, page + 1) if len(found) > PAGE_SIZE else None,
    )


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    release_id: int
    fingerprint: str
    sha256: str
    size: int
    key_id: str


def _package(session: Session, ns: str, name: str) -> Package | None:
    return session.scalar(
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .where(Namespace.name == ns, Package.name == name)
    )


def _releases(session: Session, package_id: int) -> list[Any]:
    rows = session.execute(
        select(
            Release.id,
            Release.version,
            Release.prerelease,
            Release.yanked,
            Release.yanked_reason,
            Release.created_at,
        ).where(Release.package_id == package_id)
    ).all()
    return sorted(rows, key=lambda r: version_sort_key(r.version), reverse=True)


def _artifacts(session: Session, release_ids: list[int]) -> dict[int, list[ArtifactRow]]:
    found: dict[int, list[ArtifactRow]] = {release_id: [] for release_id in release_ids}
    for row in session.execute(
        select(
            Artifact.id,
            Artifact.release_id,
            Artifact.fingerprint,
            Artifact.sha256,
            Artifact.size,
            Artifact.key_id,
        )
        .where(Artifact.release_id.in_(release_ids))
        .order_by(Artifact.fingerprint)
    ):
        found[row.release_id].append(ArtifactRow(*row))
    return found


def _key_state(session: Session, ns: str, key_id: str) -> str:
    revoked_at = session.execute(
        select(SigningKey.revoked_at)
        .join(Namespace, SigningKey.namespace_id == Namespace.id)
        .where(Namespace.name == ns, SigningKey.key_id == key_id)
    ).first()
    if revoked_at is None:
        return "not registered with this namespace"
    if revoked_at[0] is not None:
        return f"revoked on {revoked_at[0].strftime('%Y-%m-%d')}"
    return "active"


@dataclass(frozen=True)
class ManifestView:
    """What a package page shows of one artifact's manifest: small, whatever the manifest's
    size (evaluation_view caps it)."""

    base_model_id: str | None
    tables: list[MeasureTable]
    notes: list[tuple[str, str]]
    training: TrainingFacts


class ManifestViews:
    """The last `capacity` manifest views, by the artifact's sha256. A file's bytes, and so its
    manifest, never change, so an entry never goes stale, and the key means the same in every
    database (tests run several apps in one process)."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, ManifestView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, artifact: ArtifactRow) -> ManifestView:
        with self._lock:
            view = self._entries.get(artifact.sha256)
            if view is not None:
                self._entries.move_to_end(artifact.sha256)
                return view
        view = _manifest_view(session, artifact.id)
        with self._lock:
            self._entries[artifact.sha256] = view
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return view


def _manifest_view(session: Session, artifact_id: int) -> ManifestView:
    manifest = session.scalar(select(Artifact.manifest).where(Artifact.id == artifact_id))
    manifest = manifest if isinstance(manifest, dict) else {}
    base_model = manifest.get("base_model")
    tables, notes = evaluation_tables(manifest.get("evaluation"))
    return ManifestView(
        base_model_id=base_model.get("id") if isinstance(base_model, dict) else None,
        tables=tables,
        notes=notes,
        training=training_facts(manifest.get("training")),
    )


manifest_views = ManifestViews()


def _shown_evaluation(
    session: Session, ns: str, artifact: ArtifactRow | None
) -> dict[str, Any] | None:
    if artifact is None:
        return None
    view = manifest_views.get(session, artifact)
    return {
        "artifact": artifact,
        "base_model_id": view.base_model_id,
        "tables": view.tables,
        "notes": view.notes,
        "training": view.training,
        # Not in the manifest view: a key can be revoked at any time. (A revocation replaces
        # the registry's generation, so a whole page kept by response_cache is recomputed.)
        "key_state": _key_state(session, ns, artifact.key_id),
    }


@router.get("/p/{ns}/{name}", response_class=HTMLResponse)
def package_page(
    ns: NamespaceName,
    name: PackageName,
    registry: RegistryDep,
    base: Annotated[str, Query(max_length=71, description="base-model fingerprint")] = "",
) -> HTMLResponse:
    # The session is opened here, in the route's worker thread: as a dependency (SessionDep)
    # it would cost two more hops to the thread pool.
    with registry.sessions() as session:
        context = _package_page_context(session, ns, name, base)
    if context is None:
        return _render("not_found.html", status=404, what=f"{ns}/{name}")
    return _render("package.html", registry_url=registry.settings.public_url, **context)


def _package_page_context(session: Session, ns: str, name: str, base: str) -> dict[str, Any] | None:
    package = _package(session, ns, name)
    if package is None:
        return None
    releases = _releases(session, package.id)
    installable = [r for r in releases if not r.yanked and not r.prerelease]
    latest = installable[0] if installable else (releases[0] if releases else None)
    listed = releases[:VERSIONS_SHOWN]
    if latest is not None and latest not in listed:
        listed.append(latest)
    artifacts = _artifacts(session, [r.id for r in listed])
    latest_artifacts = artifacts[latest.id] if latest is not None else []
    chosen = next((a for a in latest_artifacts if a.fingerprint == base), None)
    shown = chosen or (latest_artifacts[0] if latest_artifacts else None)
    return {
        "namespace": ns,
        "name": name,
        "package": package,
        "releases": listed,
        "hidden_versions": len(releases) - len(listed),
        "yanked": [r for r in releases if r.yanked][:VERSIONS_SHOWN],
        "artifacts": artifacts,
        "latest": latest,
        "other_bases": [a.fingerprint for a in latest_artifacts if shown and a.id != shown.id],
        "shown": _shown_evaluation(session, ns, shown),
        "install_command": f"ppatch install {ns}/{name}"
        + (f"@{latest.version}" if latest else "")
        + " --model MODEL",
    }
