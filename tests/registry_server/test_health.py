"""/healthz and /metrics."""

from __future__ import annotations


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
    text = acme.client.get("/metrics").text
    assert 'ppatch_registry_uploads_total{outcome="created"} 1.0' in text
    assert 'ppatch_registry_uploads_total{outcome="unchanged"} 1.0' in text
    assert 'ppatch_registry_uploads_total{outcome="invalid_patch"} 1.0' in text
    assert f"ppatch_registry_bytes_stored {float(len(data))}" in text
    assert "ppatch_registry_artifacts 1.0" in text
    # Requests are labelled by route template, never by the raw path a client chose.
    assert 'route="/api/v1/packages/{ns}/{name}"' in text
    assert "xxxxxxxxxx" not in text
    assert "ppatch_registry_request_seconds_bucket" in text
