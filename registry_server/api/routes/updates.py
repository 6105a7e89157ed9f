"""`POST /api/v1/updates`: a deployment's whole installed set checked in one round trip."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from registry_server.api.deps import RegistryDep, SessionDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.schemas import ERROR_RESPONSES, UpdatesIn, UpdatesOut
from registry_server.updates import check_updates

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["updates"], responses=ERROR_RESPONSES)


@router.post("/updates", response_model=UpdatesOut, summary="Check installed patches for updates")
def updates(body: UpdatesIn, session: SessionDep, registry: RegistryDep) -> JSONResponse:
    if len(body.installed) > registry.settings.max_batch:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"{len(body.installed)} entries in one check; the limit is "
            f"{registry.settings.max_batch}",
        )
    # The results are built to the documented shape (response_model documents it); skipping a
    # second validation pass keeps the polling path cheap.
    return JSONResponse({"results": check_updates(session, body.installed)})
