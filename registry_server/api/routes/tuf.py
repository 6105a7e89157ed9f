"""`/tuf/...`: the signed index as TUF metadata, for `tuf.ngclient` and static mirrors.

Paths follow the TUF specification with consistent snapshots: `/tuf/{N}.root.json`,
`/tuf/timestamp.json`, `/tuf/{N}.snapshot.json`, `/tuf/{N}.targets.json`. Versioned files never
change and are cacheable forever; `timestamp.json` is the one that moves.
"""

from __future__ import annotations

import functools
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool
from securesystemslib.signer import CryptoSigner

from registry_server import tuf_repo
from registry_server.api.deps import RegistryDep
from registry_server.context import Registry
from registry_server.errors import ErrorCode, RegistryError
from registry_server.schemas import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/tuf", tags=["signed index"], responses=ERROR_RESPONSES)

IMMUTABLE = "public, max-age=31536000, immutable"
# A cache in front may keep the timestamp briefly; a client never trusts it past its expiry.
TIMESTAMP_CACHE = "public, max-age=60"
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


@functools.lru_cache(maxsize=4)
def _signer(path: FilePath) -> CryptoSigner:
    return tuf_repo.load_signer(path)


def online_signer(registry: Registry) -> CryptoSigner:
    return _signer(registry.settings.resolved_tuf_online_key)


def _json(body: str, cache: str) -> Response:
    return Response(body, media_type="application/json", headers={"Cache-Control": cache})


def _versioned(registry: Registry, role: str, version: int) -> str:
    with registry.sessions() as session:
        row = tuf_repo.stored(session, role, version)
        if row is None:
            if tuf_repo.latest(session, "root") is None:
                raise tuf_repo.TufNotInitializedError()
            raise RegistryError(ErrorCode.NOT_FOUND, f"no {role} metadata version {version}")
        return row.body


def _timestamp(registry: Registry) -> str:
    lifetimes = tuf_repo.Lifetimes.from_settings(registry.settings)
    with registry.sessions() as session:
        if tuf_repo.latest(session, "root") is None:
            raise tuf_repo.TufNotInitializedError()
        return tuf_repo.current_metadata(session, online_signer(registry), lifetimes).body


@router.get("/{version}.root.json", summary="Root metadata, by version")
async def get_root(version: Version, registry: RegistryDep) -> Response:
    return _json(await run_in_threadpool(_versioned, registry, "root", version), IMMUTABLE)


@router.get("/timestamp.json", summary="Timestamp metadata (the freshness of the index)")
async def get_timestamp(registry: RegistryDep) -> Response:
    return _json(await run_in_threadpool(_timestamp, registry), TIMESTAMP_CACHE)


@router.get("/{version}.snapshot.json", summary="Snapshot metadata, by version")
async def get_snapshot(version: Version, registry: RegistryDep) -> Response:
    return _json(await run_in_threadpool(_versioned, registry, "snapshot", version), IMMUTABLE)


@router.get("/{version}.targets.json", summary="Targets metadata, by version")
async def get_targets(version: Version, registry: RegistryDep) -> Response:
    return _json(await run_in_threadpool(_versioned, registry, "targets", version), IMMUTABLE)
