"""Every write endpoint against every kind of caller: only the right token gets through, and
each refusal is the documented status and error code, with nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

import patchfmt
from registry_server import admin
from registry_server.auth import parse_token
from registry_server.models import Token

PACKAGE = "/api/v1/packages/acme/toxicity"
NAMESPACE = "/api/v1/namespaces/acme"


@dataclass(frozen=True)
class Endpoint:
    name: str
    scope: str  # the scope it needs
    narrow_scope: str  # a real scope that is not enough
    success: int
    call: Callable[[Any, dict[str, str], dict[str, Any]], Any]


def _upload(h: Any, headers: dict[str, str], ctx: dict[str, Any]) -> Any:
    return h.upload(ctx["new_patch"], headers=headers)


def _post(path: str, body: dict[str, Any] | None = None) -> Callable[..., Any]:
    def call(h: Any, headers: dict[str, str], ctx: dict[str, Any]) -> Any:
        return h.client.post(path.format(**ctx), json=body, headers=headers)

    return call


def _add_key(h: Any, headers: dict[str, str], ctx: dict[str, Any]) -> Any:
    return h.client.post(f"{NAMESPACE}/keys", json={"public_key": ctx["new_pem"]}, headers=headers)


ENDPOINTS = [
    Endpoint("publish", "publish", "yank", 201, _upload),
    Endpoint("yank", "yank", "publish", 200, _post(PACKAGE + "/releases/1.0.0/yank")),
    Endpoint("unyank", "yank", "publish", 200, _post(PACKAGE + "/releases/1.0.0/unyank")),
    Endpoint("add key", "admin", "publish", 201, _add_key),
    Endpoint("revoke key", "admin", "yank", 200, _post(NAMESPACE + "/keys/{key_id}/revoke")),
    Endpoint("create token", "admin", "publish", 201, _post(NAMESPACE + "/tokens", {})),
    Endpoint("revoke token", "admin", "yank", 200, _post(NAMESPACE + "/tokens/{token_id}/revoke")),
]

CALLERS = {
    # caller: (status, error code) when refused
    "no token": (401, "unauthorized"),
    "malformed token": (401, "unauthorized"),
    "unknown token": (401, "unauthorized"),
    "wrong secret": (401, "unauthorized"),
    "another namespace's token": (403, "forbidden"),
    "revoked token": (401, "unauthorized"),
    "too-narrow scope": (403, "forbidden"),
    "right token": None,
}


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _headers(h: Any, caller: str, endpoint: Endpoint) -> dict[str, str]:
    if caller == "no token":
        return {}
    if caller == "malformed token":
        return {"Authorization": "Bearer not-a-registry-token"}
    if caller == "unknown token":
        return {"Authorization": "Bearer ppr_" + "0" * 12 + "_" + "x" * 43}
    if caller == "wrong secret":
        value = h.token("acme", endpoint.scope)
        flipped = "B" if value[-1] == "A" else "A"
        return _bearer(f"{value[:-1]}{flipped}")
    if caller == "another namespace's token":
        return _bearer(h.token("other", "admin"))
    if caller == "revoked token":
        with h.session() as session:
            issued = admin.create_token(session, "acme", endpoint.scope, admin.CLI_ACTOR)
            admin.revoke_token(session, "acme", issued.token_id, admin.CLI_ACTOR)
            session.commit()
        return _bearer(issued.value)
    if caller == "too-narrow scope":
        return _bearer(h.token("acme", endpoint.narrow_scope))
    return _bearer(h.token("acme", endpoint.scope))


def _state(h: Any) -> tuple[Any, ...]:
    """What a write could change: releases and their yank flags, keys, tokens, blobs."""
    index = h.client.get(PACKAGE).json()
    keys = h.client.get(f"{NAMESPACE}/keys").json()["keys"]
    with h.session() as session:
        tokens = sorted((t.id, t.revoked_at is None) for t in session.scalars(select(Token)))
    return (repr(index), repr(keys), repr(tokens), h.blob_count())


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_write_endpoint_authorization(
    acme: Any,
    make_patch: Callable[..., bytes],
    other_key: Ed25519PrivateKey,
    endpoint: Endpoint,
    caller: str,
) -> None:
    acme.namespace("other", key=other_key)
    assert acme.upload(make_patch(version="1.0.0")).status_code == 201
    if endpoint.name == "unyank":
        assert (
            acme.client.post(
                PACKAGE + "/releases/1.0.0/yank", json={}, headers=acme.auth(scope="yank")
            ).status_code
            == 200
        )
    victim = parse_token(acme.token("acme", "publish"))
    assert victim is not None
    context = {
        "new_patch": make_patch(version="1.1.0", seed=1),
        "new_pem": patchfmt.public_key_to_pem(Ed25519PrivateKey.generate().public_key()).decode(),
        "key_id": patchfmt.key_id(acme.signing_key.public_key()),
        "token_id": victim.token_id,
    }
    headers = _headers(acme, caller, endpoint)
    before = _state(acme)

    response = endpoint.call(acme, headers, context)

    expected = CALLERS[caller]
    if expected is None:
        assert response.status_code == endpoint.success, response.text
        return
    status, code = expected
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert _state(acme) == before
