"""Packages: the index, uploads of releases, yank and unyank."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

import patchfmt
from registry_server.admin import record_audit
from registry_server.api.deps import (
    NAME_SCHEMA,
    CurrentToken,
    NamespaceName,
    PackageName,
    RegistryDep,
    SessionDep,
    authorize,
    checked_name,
)
from registry_server.context import Registry
from registry_server.errors import ErrorCode, RegistryError
from registry_server.index import build_index, etag_matches
from registry_server.models import Namespace, Package, Release
from registry_server.schemas import ERROR_RESPONSES, IndexOut, PublishOut, YankIn, YankOut
from registry_server.upload import publish, receive_upload

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/packages", tags=["packages"], responses=ERROR_RESPONSES)

VersionText = Annotated[str, PathParam(max_length=128, description="SemVer 2.0 version")]


def _cache_headers(registry: Any, etag: str) -> dict[str, str]:
    max_age = registry.settings.index_max_age
    return {"ETag": etag, "Cache-Control": f"public, max-age={max_age}, must-revalidate"}


_INDEX_PARAMETERS = [
    {"name": key, "in": "path", "required": True, "schema": {"type": "string", **NAME_SCHEMA}}
    for key in ("ns", "name")
] + [
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "an ETag from an earlier answer: 304 when the index is unchanged",
    }
]


@router.get(
    "/{ns}/{name}",
    response_model=IndexOut,
    summary="The index of a package",
    responses={304: {"description": "unchanged since the ETag in If-None-Match"}},
    openapi_extra={"parameters": _INDEX_PARAMETERS},
)
async def get_index(request: Request) -> Response:
    # The polling path of every deployment, kept lean (benchmarks/registry.py): no declared
    # parameters or dependencies (FastAPI's resolution step would double the cost of a 304;
    # the OpenAPI schema lists them by hand above), one indexed lookup of the ETag
    # (registry_server.polling); the JSON is built only when it changed, and cached by ETag.
    registry: Registry = request.app.state.registry
    ns, name = request.path_params["ns"], request.path_params["name"]
    checked_name("namespace", ns)
    checked_name("package", name)
    etag = await registry.etag_lookup.fetch(ns, name)
    if etag is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"package {ns}/{name} does not exist")
    headers = _cache_headers(registry, etag)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    body = registry.index_cache.get((ns, name, etag))
    if body is None:
        built = await run_in_threadpool(_build_serialized, registry, ns, name)
        if built is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"package {ns}/{name} does not exist")
        body, etag = built
        headers = _cache_headers(registry, etag)
        registry.index_cache.put((ns, name, etag), body)
    return Response(body, media_type="application/json", headers=headers)


def _build_serialized(registry: Any, ns: str, name: str) -> tuple[bytes, str] | None:
    with registry.sessions() as session:
        built = build_index(session, ns, name)
    if built is None:
        return None
    index, etag = built
    return json.dumps(index, separators=(",", ":")).encode(), etag


@router.post(
    "/{ns}/{name}/releases",
    response_model=PublishOut,
    status_code=201,
    summary="Publish a .ppatch (multipart field `file`)",
    responses={200: {"model": PublishOut, "description": "the same bytes were already there"}},
)
async def upload_release(
    request: Request,
    ns: NamespaceName,
    name: PackageName,
    token: CurrentToken,
    session: SessionDep,
    registry: RegistryDep,
) -> JSONResponse:
    actor = authorize(token, ns, "publish")
    # The token's session (shared with CurrentToken) is done: give its connection back to the
    # pool instead of holding it through a slow upload.
    session.close()
    directory = Path(registry.settings.home) / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    outcome = "error"
    try:
        upload = await receive_upload(
            request, limit=registry.settings.max_upload_bytes, directory=directory
        )
        try:
            result = await run_in_threadpool(publish, registry, ns, name, upload, actor)
        finally:
            upload.path.unlink(missing_ok=True)
        outcome = "created" if result.created else "unchanged"
        return JSONResponse(result.body, status_code=201 if result.created else 200)
    except RegistryError as error:
        outcome = str(error.code)
        raise
    finally:
        registry.metrics.uploads.labels(outcome).inc()


def _release(session: Any, ns: str, name: str, version: str) -> tuple[Package, Release]:
    try:
        normalized = str(patchfmt.parse_version(version))
    except patchfmt.InvalidVersionError as error:
        raise RegistryError(ErrorCode.INVALID_REQUEST, str(error)) from None
    row = session.execute(
        select(Package, Release)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .join(Release, Release.package_id == Package.id)
        .where(Namespace.name == ns, Package.name == name, Release.version == normalized)
    ).first()
    if row is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"{ns}/{name} has no release {normalized!r}")
    return row[0], row[1]


def _set_yanked(
    session: SessionDep, token: Any, ns: str, name: str, version: str, reason: str | None
) -> YankOut:
    yanking = reason is not None
    actor = authorize(token, ns, "yank")
    package, release = _release(session, ns, name, version)
    release.yanked = yanking
    release.yanked_reason = reason if yanking else None
    package.index_etag = secrets.token_hex(16)
    record_audit(
        session,
        actor,
        ns,
        "release.yank" if yanking else "release.unyank",
        f"{ns}/{name}@{release.version}",
        {"reason": reason} if yanking else {},
    )
    session.commit()
    return YankOut(
        name=f"{ns}/{name}", version=release.version, yanked=yanking, reason=release.yanked_reason
    )


@router.post(
    "/{ns}/{name}/releases/{version}/yank",
    response_model=YankOut,
    summary="Yank every artifact of a release",
)
def yank_release(
    ns: NamespaceName,
    name: PackageName,
    version: VersionText,
    token: CurrentToken,
    session: SessionDep,
    body: YankIn | None = None,
) -> YankOut:
    return _set_yanked(session, token, ns, name, version, (body or YankIn()).reason)


@router.post(
    "/{ns}/{name}/releases/{version}/unyank", response_model=YankOut, summary="Undo a yank"
)
def unyank_release(
    ns: NamespaceName,
    name: PackageName,
    version: VersionText,
    token: CurrentToken,
    session: SessionDep,
) -> YankOut:
    return _set_yanked(session, token, ns, name, version, None)
