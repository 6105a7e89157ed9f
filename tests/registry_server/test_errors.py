"""Every error has the body {"error": {"code", "message"}}, including the framework's own."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from registry_server.config import Settings
from registry_server.db import create_registry_engine
from registry_server.errors import DEFAULT_STATUS, ErrorCode
from registry_server.main import create_app
from registry_server.storage import StorageError


def test_the_code_list_is_the_documented_one() -> None:
    assert {code.value: DEFAULT_STATUS[code] for code in ErrorCode} == {
        "unauthorized": 401,
        "forbidden": 403,
        "not_found": 404,
        "version_exists": 409,
        "conflict": 409,
        "payload_too_large": 413,
        "invalid_patch": 422,
        "invalid_signature": 422,
        "name_mismatch": 422,
        "invalid_request": 400,
        "database_unavailable": 503,
        "storage_unavailable": 503,
        "internal": 500,
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/no/such/page", 404, "not_found"),
        ("delete", "/api/v1/packages/acme/toxicity", 405, "invalid_request"),
        ("put", "/api/v1/updates", 405, "invalid_request"),
        ("post", "/api/v1/updates", 422, "invalid_request"),
    ],
)
def test_framework_errors_use_the_error_body(acme, method, path, status, code) -> None:
    response = getattr(acme.client, method)(path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_database_down_is_503(tmp_path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=1",
        storage=str(tmp_path / "blobs"),
    )
    engine = create_registry_engine(settings.resolved_database_url)
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
        for path in ("/api/v1/packages/acme/toxicity", "/api/v1/search", "/"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"]["code"] == "database_unavailable"
            assert response.headers["retry-after"] == "5"
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "database_unavailable"
    engine.dispose()


def test_operational_error_mid_request_is_503(acme, monkeypatch) -> None:
    from registry_server.api.routes import search

    def fail(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(search, "search_packages", fail)
    response = acme.client.get("/api/v1/search")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_storage_failure_is_503_and_leaves_no_rows(acme, make_patch, monkeypatch) -> None:
    storage = acme.app.state.registry.storage

    def broken(digest, source):
        raise StorageError("disk full")

    monkeypatch.setattr(storage, "put", broken)
    response = acme.upload(make_patch())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert acme.client.get("/api/v1/packages/acme/toxicity").status_code == 404


def test_database_failure_during_commit_leaves_no_blob(acme, make_patch, monkeypatch) -> None:
    from registry_server import upload

    def fail(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(upload, "record_release", fail)
    response = acme.upload(make_patch())
    assert response.status_code == 503
    assert acme.blob_count() == 0


def test_unexpected_error_is_500_without_details(acme, monkeypatch) -> None:
    from registry_server.api.routes import search

    def fail(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(search, "search_packages", fail)
    response = acme.client.get("/api/v1/search")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error"}}


def test_openapi_schema_is_served(acme) -> None:
    schema = acme.client.get("/openapi.json").json()
    assert "/api/v1/packages/{ns}/{name}" in schema["paths"]
    assert "/api/v1/updates" in schema["paths"]
