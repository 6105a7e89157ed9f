"""Administrative operations on namespaces, tokens and signing keys, shared by the admin command
line and the admin endpoints. Each one writes its audit row in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import patchfmt
from registry_server.auth import IssuedToken, issue_token
from registry_server.errors import ErrorCode, RegistryError
from registry_server.free_text import control_character_problem
from registry_server.generation import mark_changed
from registry_server.models import SCOPES, AuditEvent, Namespace, SigningKey, Token, utcnow
from registry_server.names import name_problem

__all__ = [
    "CLI_ACTOR",
    "Actor",
    "add_key",
    "create_namespace",
    "create_token",
    "get_namespace",
    "list_keys",
    "list_namespaces",
    "list_tokens",
    "record_audit",
    "revoke_key",
    "revoke_token",
]

MAX_KEY_PEM_BYTES = 16 * 1024


@dataclass(frozen=True)
class Actor:
    """Who is writing: a token (by id) or the admin command line."""

    name: str
    token_id: str | None = None

    @classmethod
    def for_token(cls, token_id: str) -> Actor:
        return cls(f"token:{token_id}", token_id)


CLI_ACTOR = Actor("cli")


def record_audit(
    session: Session,
    actor: Actor,
    namespace: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """The audit row of a write, in the caller's transaction; committing it also replaces the
    registry's generation, so cached answers of every server process are recomputed."""
    mark_changed(session)
    session.add(
        AuditEvent(
            actor=actor.name,
            token_id=actor.token_id,
            namespace=namespace,
            action=action,
            target=target,
            detail=detail or {},
        )
    )


def _valid_namespace_name(name: str) -> str:
    problem = name_problem("namespace", name)
    if problem:
        raise RegistryError(ErrorCode.INVALID_REQUEST, problem)
    return name


def get_namespace(session: Session, name: str) -> Namespace:
    _valid_namespace_name(name)
    namespace = session.scalar(select(Namespace).where(Namespace.name == name))
    if namespace is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"namespace {name!r} does not exist")
    return namespace


def create_namespace(session: Session, name: str, actor: Actor) -> Namespace:
    _valid_namespace_name(name)
    if session.scalar(select(Namespace.id).where(Namespace.name == name)) is not None:
        raise RegistryError(ErrorCode.CONFLICT, f"namespace {name!r} already exists")
    namespace = Namespace(name=name)
    session.add(namespace)
    record_audit(session, actor, name, "namespace.create", name)
    try:
        session.flush()
    except IntegrityError:
        # Another process created it between the check and the insert.
        session.rollback()
        raise RegistryError(ErrorCode.CONFLICT, f"namespace {name!r} already exists") from None
    return namespace


def create_token(
    session: Session, namespace_name: str, scope: str, actor: Actor, description: str = ""
) -> IssuedToken:
    if scope not in SCOPES:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"invalid scope {scope!r}: expected one of {', '.join(SCOPES)}",
        )
    if len(description) > 200:
        raise RegistryError(ErrorCode.INVALID_REQUEST, "token description is over 200 characters")
    if problem := control_character_problem(description):
        raise RegistryError(ErrorCode.INVALID_REQUEST, f"token description {problem}")
    namespace = get_namespace(session, namespace_name)
    issued = issue_token()
    session.add(
        Token(
            id=issued.token_id,
            namespace_id=namespace.id,
            scope=scope,
            secret_hash=issued.secret_hash,
            description=description,
        )
    )
    record_audit(session, actor, namespace.name, "token.create", issued.token_id, {"scope": scope})
    session.flush()
    return issued


def revoke_token(session: Session, namespace_name: str, token_id: str, actor: Actor) -> Token:
    namespace = get_namespace(session, namespace_name)
    token = session.scalar(
        select(Token).where(Token.id == token_id, Token.namespace_id == namespace.id)
    )
    if token is None:
        raise RegistryError(
            ErrorCode.NOT_FOUND, f"namespace {namespace.name!r} has no token {token_id!r}"
        )
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_audit(session, actor, namespace.name, "token.revoke", token_id)
    session.flush()
    return token


def add_key(
    session: Session, namespace_name: str, public_key_pem: bytes, actor: Actor
) -> SigningKey:
    namespace = get_namespace(session, namespace_name)
    if len(public_key_pem) > MAX_KEY_PEM_BYTES:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"public key is {len(public_key_pem)} bytes; an ed25519 PEM key is under 200",
        )
    try:
        public_key = patchfmt.load_public_key(public_key_pem)
    except (ValueError, TypeError) as error:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST, f"not an ed25519 public key in PEM format: {error}"
        ) from None
    key_id = patchfmt.key_id(public_key)
    existing = session.scalar(
        select(SigningKey).where(
            SigningKey.namespace_id == namespace.id, SigningKey.key_id == key_id
        )
    )
    if existing is not None:
        state = "revoked" if existing.revoked_at else "registered"
        raise RegistryError(
            ErrorCode.CONFLICT,
            f"key {key_id!r} is already {state} in namespace {namespace.name!r}",
        )
    key = SigningKey(
        namespace_id=namespace.id,
        key_id=key_id,
        public_key_pem=patchfmt.public_key_to_pem(public_key).decode("ascii"),
    )
    session.add(key)
    record_audit(session, actor, namespace.name, "key.add", key_id)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise RegistryError(
            ErrorCode.CONFLICT, f"key {key_id!r} is already registered in {namespace.name!r}"
        ) from None
    return key


def revoke_key(session: Session, namespace_name: str, key_id: str, actor: Actor) -> SigningKey:
    namespace = get_namespace(session, namespace_name)
    key = session.scalar(
        select(SigningKey).where(
            SigningKey.namespace_id == namespace.id, SigningKey.key_id == key_id
        )
    )
    if key is None:
        shown = key_id if len(key_id) <= 80 else key_id[:77] + "..."
        raise RegistryError(
            ErrorCode.NOT_FOUND, f"namespace {namespace.name!r} has no key {shown!r}"
        )
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record_audit(session, actor, namespace.name, "key.revoke", key_id)
    session.flush()
    return key


def list_namespaces(session: Session) -> list[Namespace]:
    """Every namespace, by name."""
    return list(session.scalars(select(Namespace).order_by(Namespace.name)))


def list_tokens(session: Session, namespace_name: str | None = None) -> list[Token]:
    """Tokens (never their secrets), oldest first; of one namespace when it is named."""
    query = select(Token).join(Namespace, Token.namespace_id == Namespace.id)
    if namespace_name is not None:
        query = query.where(Namespace.id == get_namespace(session, namespace_name).id)
    return list(session.scalars(query.order_by(Namespace.name, Token.created_at, Token.id)))


def list_keys(session: Session, namespace_name: str | None = None) -> list[SigningKey]:
    """Signing keys, revoked ones included, oldest first; of one namespace when it is named."""
    query = select(SigningKey).join(Namespace, SigningKey.namespace_id == Namespace.id)
    if namespace_name is not None:
        query = query.where(Namespace.id == get_namespace(session, namespace_name).id)
    return list(
        session.scalars(query.order_by(Namespace.name, SigningKey.created_at, SigningKey.id))
    )
