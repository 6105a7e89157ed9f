"""/healthz and /metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from registry_server.main import create_app


def test_healthz(acme) -> None:
    response = acme.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_metrics_count_requests_uploads_and_bytes(acme, make_patch) -> None:
    data = make_patch()
    acme.upload(data)
    acme.upload(data)
    acme.upload(b"garbage")
    acme.client.get("/api/v1/packages/acme/toxicity")
    acme.client.get("/api/v1/packages/acme/" + "x" * 10)
    text = acme.local_client().get("/metrics").text
    assert 'ppatch_registry_uploads_total{outcome="created"} 1.0' in text
    assert 'ppatch_registry_uploads_total{outcome="unchanged"} 1.0' in text
    assert 'ppatch_registry_uploads_total{outcome="invalid_patch"} 1.0' in text
    assert f"ppatch_registry_bytes_stored {float(len(data))}" in text
    assert "ppatch_registry_artifacts 1.0" in text
    # Requests are labelled by route template, never by the raw path a client chose.
    assert 'route="/api/v1/packages/{ns}/{name}"' in text
    assert "xxxxxxxxxx" not in text
    assert "ppatch_registry_request_seconds_bucket" in text


def test_metrics_refuse_remote_clients_without_a_token(acme) -> None:
    response = acme.client.get("/metrics")  # the TestClient's address is "testclient"
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "PPATCH_REGISTRY_METRICS_TOKEN" in response.json()["error"]["message"]
    remote = TestClient(acme.app, client=("203.0.113.9", 4000), raise_server_exceptions=False)
    assert remote.get("/metrics").status_code == 403


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong", 401), ("scrape-secret", 401), ("Bearer scrape-secret", 200)],
)
def test_metrics_token_is_required_once_set(acme, authorization, status) -> None:
    settings = acme.settings.model_copy(update={"metrics_token": SecretStr("scrape-secret")})
    app = create_app(settings, engine=acme.engine)
    # With a token set, even a loopback client needs it.
    client = TestClient(app, client=("127.0.0.1", 4000), raise_server_exceptions=False)
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert "ppatch_registry_requests_total" in response.text
    else:
        assert response.json()["error"]["code"] == "unauthorized"
