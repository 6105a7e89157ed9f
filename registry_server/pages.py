"""HTML pages for people: `/` (the package list, with search) and `/p/{ns}/{name}`.

Jinja2 templates with autoescaping on, so a package summary can never inject markup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from patchfmt.versions import version_sort_key
from registry_server.api.deps import NamespaceName, PackageName, RegistryDep, SessionDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.models import Namespace, Package, Release
from registry_server.search import search_packages

__all__ = ["router", "templates"]

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)


def _render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(template).render(**context), status_code=status)


@router.get("/", response_class=HTMLResponse)
def package_list(
    session: SessionDep,
    registry: RegistryDep,
    q: Annotated[str, Query()] = "",
    domain: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    if len(q) > registry.settings.max_query_length:
        raise RegistryError(ErrorCode.INVALID_REQUEST, "search text is too long")
    packages = search_packages(session, text=q, domain=domain, fingerprint="", name="", limit=200)
    return _render("index.html", packages=packages, q=q, domain=domain)


def _evaluation_rows(release: Release) -> list[dict[str, Any]]:
    rows = []
    for artifact in sorted(release.artifacts, key=lambda a: a.fingerprint):
        evaluation = artifact.manifest.get("evaluation") or {}
        for metric, value in sorted(evaluation.items()):
            rows.append({"fingerprint": artifact.fingerprint, "metric": metric, "value": value})
    return rows


@router.get("/p/{ns}/{name}", response_class=HTMLResponse)
def package_page(
    ns: NamespaceName, name: PackageName, session: SessionDep, request: Request
) -> HTMLResponse:
    package = session.scalar(
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .where(Namespace.name == ns, Package.name == name)
        .options(selectinload(Package.releases).selectinload(Release.artifacts))
    )
    if package is None:
        return _render("not_found.html", status=404, what=f"{ns}/{name}")
    releases = sorted(package.releases, key=lambda r: version_sort_key(r.version), reverse=True)
    installable = [r for r in releases if not r.yanked and not r.prerelease]
    shown = installable[0] if installable else (releases[0] if releases else None)
    registry_url = str(request.base_url).rstrip("/")
    return _render(
        "package.html",
        namespace=ns,
        name=name,
        package=package,
        releases=releases,
        latest=shown,
        evaluation=_evaluation_rows(shown) if shown else [],
        install_command=f"ppatch install {ns}/{name}"
        + (f"@{shown.version}" if shown else "")
        + " --model MODEL",
        registry_url=registry_url,
    )
