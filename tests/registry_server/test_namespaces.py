"""Namespace keys (public) and the admin endpoints of a namespace's admin token."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import patchfmt
from registry_server.models import AuditEvent, Token


def test_keys_are_listed_for_pinning(acme, signing_key) -> None:
    response = acme.client.get("/api/v1/namespaces/acme/keys")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["key_id"] == patchfmt.key_id(signing_key.public_key())
    assert key["active"] is True
    assert patchfmt.key_id(patchfmt.load_public_key(key["public_key"].encode())) == key["key_id"]


def test_keys_of_unknown_namespace_is_404(acme) -> None:
    response = acme.client.get("/api/v1/namespaces/nobody/keys")
    assert response.status_code == 404
    assert "'nobody'" in response.json()["error"]["message"]


def test_admin_token_adds_and_revokes_keys(acme, other_key) -> None:
    pem = patchfmt.public_key_to_pem(other_key.public_key()).decode()
    added = acme.client.post(
        "/api/v1/namespaces/acme/keys", json={"public_key": pem}, headers=acme.auth(scope="admin")
    )
    assert added.status_code == 201
    key_id = added.json()["key_id"]
    assert key_id == patchfmt.key_id(other_key.public_key())
    again = acme.client.post(
        "/api/v1/namespaces/acme/keys", json={"public_key": pem}, headers=acme.auth(scope="admin")
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    revoked = acme.client.post(
        f"/api/v1/namespaces/acme/keys/{key_id}/revoke", headers=acme.auth(scope="admin")
    )
    assert revoked.json() == {"namespace": "acme", "key_id": key_id, "active": False}
    keys = acme.client.get("/api/v1/namespaces/acme/keys").json()["keys"]
    assert {k["key_id"]: k["active"] for k in keys}[key_id] is False


@pytest.mark.parametrize(
    "public_key", ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_invalid_public_key_is_400(acme, public_key) -> None:
    response = acme.client.post(
        "/api/v1/namespaces/acme/keys",
        json={"public_key": public_key},
        headers=acme.auth(scope="admin"),
    )
    assert response.status_code == 400
    assert "ed25519 public key" in response.json()["error"]["message"]


def test_admin_token_creates_tokens_shown_once(acme) -> None:
    response = acme.client.post(
        "/api/v1/namespaces/acme/tokens",
        json={"scope": "yank", "description": "ci"},
        headers=acme.auth(scope="admin"),
    )
    assert response.status_code == 201
    body = response.json()
    assert body["scope"] == "yank"
    with acme.session() as session:
        row = session.get(Token, body["token_id"])
        assert row is not None
        assert body["token"] not in row.secret_hash  # only the hash is kept
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "token.create")
        ).all()
    assert [e.target for e in events][-1] == body["token_id"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"scope": "root"}, 400),
        ({"scope": "publish", "extra": 1}, 422),
        ({"description": "x" * 201}, 422),
    ],
)
def test_invalid_token_requests(acme, body, status) -> None:
    response = acme.client.post(
        "/api/v1/namespaces/acme/tokens", json=body, headers=acme.auth(scope="admin")
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == "invalid_request"


def test_revoking_unknown_token_is_404(acme) -> None:
    response = acme.client.post(
        "/api/v1/namespaces/acme/tokens/0123456789abcdef/revoke", headers=acme.auth(scope="admin")
    )
    assert response.status_code == 404


def test_get_token_says_whose_it_is(acme) -> None:
    answer = acme.client.get("/api/v1/token", headers=acme.auth("acme", "yank"))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["namespace"], body["scope"]) == ("acme", "yank")
    assert acme.token("acme", "yank").startswith(f"ppr_{body['token_id']}_")
    assert acme.client.get("/api/v1/token").status_code == 401
    forged = acme.token("acme", "yank")[:-3] + "AAA"
    refused = acme.client.get("/api/v1/token", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
