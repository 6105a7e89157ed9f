"""Search and the batch update check."""

from __future__ import annotations

import pytest

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
FP_C = "sha256:" + "c" * 64


@pytest.fixture
def catalogue(acme, make_patch, other_key):
    acme.namespace("beta", key=other_key)
    uploads = [
        ("acme", make_patch(version="1.0.0", seed=1)),
        ("acme", make_patch(version="1.1.0", seed=2)),
        ("acme", make_patch(version="1.2.0", seed=3, fingerprint=FP_B)),
        ("acme", make_patch(version="2.0.0-rc.1", seed=4)),
        ("acme", make_patch(name="acme/bias", domain="bias", summary="Gender bias fix", seed=5)),
        (
            "beta",
            make_patch(name="beta/toxicity", key=other_key, summary="Beta's 100% fix", seed=6),
        ),
    ]
    for namespace, data in uploads:
        path = "/".join(__import__("patchfmt").read_patch(data).manifest.name.split("/"))
        response = acme.upload(data, path=path, headers=acme.auth(namespace))
        assert response.status_code == 201, response.text
    return acme


def _names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [f"{r['namespace']}/{r['name']}" for r in response.json()["results"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["acme/bias", "acme/toxicity", "beta/toxicity"]),
        ({"q": "toxic"}, ["acme/toxicity", "beta/toxicity"]),
        ({"q": "GENDER"}, ["acme/bias"]),
        ({"q": "100%"}, ["beta/toxicity"]),
        ({"q": "%"}, ["beta/toxicity"]),
        ({"q": "_"}, []),
        ({"domain": "bias"}, ["acme/bias"]),
        ({"fingerprint": FP_B}, ["acme/toxicity"]),
        ({"fingerprint": FP_C}, []),
        ({"name": "toxicity"}, ["acme/toxicity", "beta/toxicity"]),
        ({"name": "tox"}, []),
        ({"q": "beta", "name": "toxicity"}, ["beta/toxicity"]),
    ],
)
def test_search(catalogue, params, expected) -> None:
    assert _names(catalogue.client.get("/api/v1/search", params=params)) == expected


def test_search_result_shape(catalogue) -> None:
    results = catalogue.client.get("/api/v1/search", params={"name": "toxicity", "q": "acme"})
    (result,) = results.json()["results"]
    assert result == {
        "namespace": "acme",
        "name": "toxicity",
        "domain": "toxicity",
        "summary": "Lowers toxicity of tiny-model",
        "latest_version": "1.2.0",
        "fingerprints": [FP_A, FP_B],
    }


@pytest.mark.parametrize("length", [513, 20_000])
def test_very_long_query_is_400(catalogue, length) -> None:
    response = catalogue.client.get("/api/v1/search", params={"q": "x" * length})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "limit is 512" in response.json()["error"]["message"]


def test_search_parameters_are_validated(catalogue) -> None:
    for params in ({"limit": "0"}, {"limit": "many"}, {"domain": "d" * 100}):
        response = catalogue.client.get("/api/v1/search", params=params)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_request"


def test_updates_answers_a_batch_in_one_round_trip(catalogue) -> None:
    catalogue.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "regressed fluency"},
        headers=catalogue.auth(scope="yank"),
    )
    installed = [
        {"name": "acme/toxicity", "version": "1.0.0", "fingerprint": FP_A},
        {"name": "acme/toxicity", "version": "1.2.0", "fingerprint": FP_B},
        {"name": "acme/toxicity", "version": "1.0.0", "fingerprint": FP_C},
        {"name": "acme/missing", "version": "1.0.0", "fingerprint": FP_A},
        {"name": "not a name", "version": "1.0.0", "fingerprint": FP_A},
    ]
    response = catalogue.client.post("/api/v1/updates", json={"installed": installed})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["found"], r["latest"], r["yanked"]) for r in results] == [
        (True, "1.1.0", True),  # the rc is a pre-release; 1.2.0 has no FP_A artifact
        (True, "1.2.0", False),
        (True, None, True),  # a yank covers the release, whatever the fingerprint
        (False, None, False),
        (False, None, False),
    ]
    assert results[0]["yanked_reason"] == "regressed fluency"
    assert results[0]["latest_artifact"]["fingerprint"] == FP_A
    assert results[0]["latest_artifact"]["url"].startswith("/blobs/sha256/")
    assert results[1]["latest_artifact"]["fingerprint"] == FP_B


def test_updates_never_offer_a_yanked_release(catalogue) -> None:
    # For FP_A the releases are 1.0.0 and 1.1.0 (1.2.0 is FP_B's, 2.0.0-rc.1 a pre-release).
    def latest() -> list[object]:
        response = catalogue.client.post(
            "/api/v1/updates",
            json={
                "installed": [{"name": "acme/toxicity", "version": "1.0.0", "fingerprint": FP_A}]
            },
        )
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        return [result["latest"], result["yanked"]]

    assert latest() == ["1.1.0", False]
    for version, expected in (("1.1.0", ["1.0.0", False]), ("1.0.0", [None, True])):
        yanked = catalogue.client.post(
            f"/api/v1/packages/acme/toxicity/releases/{version}/yank",
            json={"reason": "withdrawn"},
            headers=catalogue.auth(scope="yank"),
        )
        assert yanked.status_code == 200, yanked.text
        assert latest() == expected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"installed": "acme/toxicity"},
        {"installed": [{"name": "acme/toxicity"}]},
        {"installed": [], "extra": 1},
        {"installed": [{"name": "a/b", "version": "1" * 200, "fingerprint": FP_A}]},
    ],
)
def test_updates_rejects_malformed_bodies(catalogue, body) -> None:
    response = catalogue.client.post("/api/v1/updates", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_updates_batch_size_is_bounded(catalogue) -> None:
    entry = {"name": "acme/toxicity", "version": "1.0.0", "fingerprint": FP_A}
    response = catalogue.client.post("/api/v1/updates", json={"installed": [entry] * 501})
    assert response.status_code == 400
    assert "limit is 500" in response.json()["error"]["message"]
