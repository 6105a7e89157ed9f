"""FastAPI dependencies as `Annotated` aliases: the registry context, a database session, the
current token, and checked path names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from patchfmt.names import MAX_NAME_PART_LENGTH, NAME_PART_PATTERN
from registry_server.admin import Actor
from registry_server.auth import parse_token, scope_allows, secret_matches
from registry_server.context import Registry
from registry_server.errors import ErrorCode, RegistryError
from registry_server.models import Token
from registry_server.names import name_problem

__all__ = [
    "CurrentToken",
    "NamespaceName",
    "PackageName",
    "RegistryDep",
    "SessionDep",
    "authorize",
    "checked_name",
    "get_registry",
]

# The name rule, documented in the OpenAPI schema but checked by `checked_name`, whose answer
# (400 invalid_request naming the rule) is clearer than a pattern mismatch.
NAME_SCHEMA: dict[str, Any] = {
    "pattern": f"^{NAME_PART_PATTERN.pattern}$",
    "maxLength": MAX_NAME_PART_LENGTH,
}
_NAME_DOC: dict[str, Any] = {"json_schema_extra": NAME_SCHEMA}

_BEARER = {"WWW-Authenticate": 'Bearer realm="ppatch-registry"'}


# Trivial dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread
# pool, a hop that costs more than the work on the polling path.
async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_session(registry: RegistryDep) -> Iterator[Session]:
    with registry.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def checked_name(kind: str, value: str) -> str:
    problem = name_problem(kind, value)
    if problem:
        raise RegistryError(ErrorCode.INVALID_REQUEST, problem)
    return value


async def namespace_name(ns: Annotated[str, Path(description="namespace", **_NAME_DOC)]) -> str:
    return checked_name("namespace", ns)


async def package_name(name: Annotated[str, Path(description="package name", **_NAME_DOC)]) -> str:
    return checked_name("package", name)


NamespaceName = Annotated[str, Depends(namespace_name)]
PackageName = Annotated[str, Depends(package_name)]


def _unauthorized(message: str) -> RegistryError:
    return RegistryError(ErrorCode.UNAUTHORIZED, message, headers=_BEARER)


def current_token(request: Request, session: SessionDep) -> Token:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("this request needs a token: send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    parsed = parse_token(value.strip())
    if parsed is None:
        raise _unauthorized("malformed token: registry tokens look like 'ppr_<id>_<secret>'")
    token = session.scalar(
        select(Token).options(joinedload(Token.namespace)).where(Token.id == parsed.token_id)
    )
    if token is None or not secret_matches(parsed.secret, token.secret_hash):
        raise _unauthorized("invalid token")
    if token.revoked_at is not None:
        raise _unauthorized(f"token {token.id!r} has been revoked")
    return token


CurrentToken = Annotated[Token, Depends(current_token)]


def authorize(token: Token, namespace: str, scope: str) -> Actor:
    """The actor for the audit log, when `token` may act on `namespace` with `scope`."""
    if token.namespace.name != namespace:
        raise RegistryError(
            ErrorCode.FORBIDDEN,
            f"this token belongs to namespace {token.namespace.name!r}, not {namespace!r}",
        )
    if not scope_allows(token.scope, scope):
        raise RegistryError(
            ErrorCode.FORBIDDEN,
            f"this token's scope {token.scope!r} does not allow {scope!r}; "
            f"create a token with --scope {scope} (or admin)",
        )
    return Actor.for_token(token.id)
