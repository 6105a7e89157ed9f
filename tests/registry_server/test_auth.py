"""Tokens and scopes: who may publish, yank and administer a namespace."""

from __future__ import annotations

import pytest

from registry_server.auth import issue_token, parse_token, scope_allows, secret_matches


def test_issued_token_parses_and_matches_only_its_hash() -> None:
    issued = issue_token()
    parsed = parse_token(issued.value)
    assert parsed is not None
    assert parsed.token_id == issued.token_id
    assert secret_matches(parsed.secret, issued.secret_hash)
    assert not secret_matches(parsed.secret[:-1] + "A", issued.secret_hash)
    assert issued.value not in issued.secret_hash


@pytest.mark.parametrize(
    "value",
    ["", "ppr_", "ppr_zz_secret", "Bearer x", "ppr_0123456789abcdef_short", "x" * 5000],
)
def test_malformed_tokens_do_not_parse(value: str) -> None:
    assert parse_token(value) is None


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        ("admin", "publish", True),
        ("admin", "yank", True),
        ("admin", "admin", True),
        ("publish", "publish", True),
        ("publish", "yank", False),
        ("publish", "admin", False),
        ("yank", "yank", True),
        ("yank", "publish", False),
    ],
)
def test_scope_allows(held: str, needed: str, allowed: bool) -> None:
    assert scope_allows(held, needed) is allowed


# -- over HTTP, on both databases -------------------------------------------------------------


def _revoked_token(acme) -> str:
    value = acme.token("acme")
    token_id = value.split("_")[1]
    response = acme.client.post(
        f"/api/v1/namespaces/acme/tokens/{token_id}/revoke", headers=acme.auth(scope="admin")
    )
    assert response.status_code == 200
    return value


@pytest.mark.parametrize(
    ("make_headers", "fragment"),
    [
        (lambda acme: {}, "needs a token"),
        (lambda acme: {"Authorization": "Basic dXNlcjpwYXNz"}, "malformed Authorization"),
        (lambda acme: {"Authorization": "Bearer not-a-token"}, "malformed token"),
        (
            lambda acme: {"Authorization": "Bearer " + acme.token("acme")[:-4] + "AAAA"},
            "invalid token",
        ),
        (lambda acme: {"Authorization": "Bearer " + issue_token().value}, "invalid token"),
        (lambda acme: {"Authorization": "Bearer " + _revoked_token(acme)}, "revoked"),
    ],
    ids=["none", "basic", "malformed", "wrong-secret", "unknown-id", "revoked"],
)
def test_bad_tokens_are_401(acme, make_patch, make_headers, fragment) -> None:
    response = acme.upload(make_patch(), headers=make_headers(acme))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert fragment in response.json()["error"]["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert acme.blob_count() == 0


def test_token_of_another_namespace_is_403(acme, make_patch) -> None:
    acme.namespace("beta")
    response = acme.upload(make_patch(), headers=acme.auth("beta"))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "'beta'" in error["message"] and "'acme'" in error["message"]
    assert acme.blob_count() == 0


@pytest.mark.parametrize(
    ("scope", "method", "url", "body"),
    [
        ("yank", "post", "/api/v1/packages/acme/toxicity/releases", None),
        ("publish", "post", "/api/v1/packages/acme/toxicity/releases/1.0.0/yank", {"reason": "x"}),
        ("publish", "post", "/api/v1/namespaces/acme/tokens", {"scope": "publish"}),
        ("yank", "post", "/api/v1/namespaces/acme/keys", {"public_key": "x"}),
        ("publish", "post", "/api/v1/namespaces/acme/keys/k/revoke", None),
    ],
    ids=["yank-publishes", "publish-yanks", "publish-makes-token", "yank-adds-key", "revoke-key"],
)
def test_too_narrow_scope_is_403(acme, make_patch, scope, method, url, body) -> None:
    acme.upload(make_patch(), headers=acme.auth(scope="admin"))
    kwargs = {"json": body} if body is not None else {}
    if url.endswith("/releases"):
        kwargs = {"files": {"file": ("p.ppatch", make_patch(version="2.0.0"))}}
    response = getattr(acme.client, method)(url, headers=acme.auth(scope=scope), **kwargs)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert "--scope" in response.json()["error"]["message"]


def test_issued_tokens_have_the_shape_the_client_checks_at_login() -> None:
    from patchfmt.tokens import looks_like_token

    assert all(looks_like_token(issue_token().value) for _ in range(20))
    assert not looks_like_token("ppr_0123456789abcdef_short")
