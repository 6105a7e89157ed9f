"""`GET /api/v1/token`: which namespace and scope the request's token has.

`ppatch login --check` asks this before saving a token, so that a mistyped or revoked token
is caught at login rather than at the first publish. It changes nothing and needs no scope.
"""

from __future__ import annotations

from fastapi import APIRouter

from registry_server.api.deps import CurrentToken
from registry_server.schemas import ERROR_RESPONSES, TokenInfo

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["tokens"], responses=ERROR_RESPONSES)


@router.get("/token", response_model=TokenInfo, summary="The token this request carries")
def current_token_info(token: CurrentToken) -> TokenInfo:
    return TokenInfo(token_id=token.id, namespace=token.namespace.name, scope=token.scope)
