"""Namespaces: the public key list (for the client's key pinning) and the admin operations of a
namespace's admin token (tokens and keys). Creating a namespace is the operator's job
(`ppatch-registry namespace create`): a token always belongs to an existing namespace."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from registry_server import admin
from registry_server.api.deps import CurrentToken, NamespaceName, SessionDep, authorize
from registry_server.models import SigningKey
from registry_server.schemas import (
    ERROR_RESPONSES,
    KeyAdded,
    KeyIn,
    KeyOut,
    KeysOut,
    TokenIn,
    TokenOut,
    TokenRevoked,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"], responses=ERROR_RESPONSES)

TokenId = Annotated[str, Path(max_length=32)]
KeyId = Annotated[str, Path(max_length=128)]


@router.get("/{ns}/keys", response_model=KeysOut, summary="The namespace's signing keys")
def list_keys(ns: NamespaceName, session: SessionDep) -> KeysOut:
    namespace = admin.get_namespace(session, ns)
    keys = session.scalars(
        select(SigningKey).where(SigningKey.namespace_id == namespace.id).order_by(SigningKey.id)
    )
    return KeysOut(
        namespace=ns,
        keys=[
            KeyOut(key_id=key.key_id, public_key=key.public_key_pem, active=key.revoked_at is None)
            for key in keys
        ],
    )


@router.post("/{ns}/keys", response_model=KeyAdded, status_code=201, summary="Register a key")
def add_key(ns: NamespaceName, body: KeyIn, token: CurrentToken, session: SessionDep) -> KeyAdded:
    actor = authorize(token, ns, "admin")
    key = admin.add_key(session, ns, body.public_key.encode("utf-8"), actor)
    session.commit()
    return KeyAdded(namespace=ns, key_id=key.key_id, active=True)


@router.post("/{ns}/keys/{key_id}/revoke", response_model=KeyAdded, summary="Revoke a key")
def revoke_key(
    ns: NamespaceName, key_id: KeyId, token: CurrentToken, session: SessionDep
) -> KeyAdded:
    actor = authorize(token, ns, "admin")
    key = admin.revoke_key(session, ns, key_id, actor)
    session.commit()
    return KeyAdded(namespace=ns, key_id=key.key_id, active=False)


@router.post("/{ns}/tokens", response_model=TokenOut, status_code=201, summary="Create a token")
def create_token(
    ns: NamespaceName, body: TokenIn, token: CurrentToken, session: SessionDep
) -> TokenOut:
    actor = authorize(token, ns, "admin")
    issued = admin.create_token(session, ns, body.scope, actor, body.description)
    session.commit()
    return TokenOut(token_id=issued.token_id, namespace=ns, scope=body.scope, token=issued.value)


@router.post(
    "/{ns}/tokens/{token_id}/revoke", response_model=TokenRevoked, summary="Revoke a token"
)
def revoke_token(
    ns: NamespaceName, token_id: TokenId, token: CurrentToken, session: SessionDep
) -> TokenRevoked:
    actor = authorize(token, ns, "admin")
    admin.revoke_token(session, ns, token_id, actor)
    session.commit()
    return TokenRevoked(token_id=token_id, revoked=True)
