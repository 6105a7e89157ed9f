"""`POST /api/v1/updates`: a deployment's whole installed set checked in one round trip."""

from __future__ import annotations

from fastapi import APIRouter

from registry_server.api.deps import RegistryDep, SessionDep
from registry_server.errors import ErrorCode, RegistryError
from registry_server.schemas import UpdateResult, UpdatesIn, UpdatesOut
from registry_server.updates import check_updates

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["updates"])


@router.post("/updates", response_model=UpdatesOut, summary="Check installed patches for updates")
def updates(body: UpdatesIn, session: SessionDep, registry: RegistryDep) -> UpdatesOut:
    if len(body.installed) > registry.settings.max_batch:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"{len(body.installed)} entries in one check; the limit is "
            f"{registry.settings.max_batch}",
        )
    return UpdatesOut(
        results=[UpdateResult(**entry) for entry in check_updates(session, body.installed)]
    )
