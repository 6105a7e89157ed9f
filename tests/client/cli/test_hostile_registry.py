"""The attacks of issue 15, played by a proxy that rewrites or replays a real registry's answers.

Each test drives the `ppatch` CLI against the hostile proxy (tests/client/hostile_registry.py)
in front of the session's real `ppatch-registry serve`, and checks that the attack fails with a
clear message, a non-zero exit, and nothing installed or reported wrongly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import key_id, public_key_to_pem
from ppatch.errors import ExitCode
from tests.client.conftest import Models, Registry, build_patch, stored_files
from tests.client.hostile_registry import Answer, HostileRegistry, hostile_registry, rewrite

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def hostile(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileRegistry]:
    with hostile_registry(registry.url) as proxy:
        monkeypatch.setenv("PPATCH_REGISTRY", proxy.url)
        yield proxy


def installed(ppatch: Any, model: Path) -> list[tuple[str, str]]:
    result = ppatch("list", "--model", model, "--json")
    assert result.code == 0, result.err
    return [(p["name"], p["version"]) for p in json.loads(result.out)["packages"]]


def namespace_with_key(registry: Registry, namespace: str, seed: int) -> Ed25519PrivateKey:
    """A namespace of the test's own, so that revoking its keys touches no other test."""
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    if namespace not in registry.tokens:
        registry.add_namespace(namespace, key)
    return registry.keys[namespace]


def index_path(full_name: str) -> str:
    return f"/api/v1/packages/{full_name}"


def with_release(index: dict[str, Any], version: str, data: bytes, url: str, fp: str) -> Any:
    """`index` with one more release whose only artifact is `data`, served at `url`."""
    digest = hashlib.sha256(data).hexdigest()
    release = {
        "version": version,
        "yanked": False,
        "yanked_reason": None,
        "artifacts": [
            {"fingerprint": fp, "sha256": digest, "size": len(data), "url": url},
        ],
    }
    return {**index, "releases": [*index["releases"], release]}


def test_an_index_answered_for_another_namespace_is_refused(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    evil = namespace_with_key(registry, "evil", 66)
    registry.publish(build_patch("evil/toxicity", "6.6.6", models.fingerprint_a, evil))
    assert ppatch("install", "acme/toxicity@1.2.0", "--model", models.a).code == 0
    before = stored_files()
    hostile.overrides[index_path("acme/toxicity")] = hostile.fetch(index_path("evil/toxicity"))
    result = ppatch("install", "acme/toxicity", "--upgrade", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "asked the registry for acme/toxicity but it answered with the index of evil/" in (
        result.err
    )
    assert "evil" not in result.out and "pinned" not in result.err
    assert installed(ppatch, models.a) == [("acme/toxicity", "1.2.0")]
    assert stored_files() == before


def test_a_release_signed_with_a_revoked_key_is_refused(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    stolen = namespace_with_key(registry, "rot", 71)
    registry.publish(build_patch("rot/guard", "1.0.0", models.fingerprint_a, stolen))
    assert ppatch("install", "rot/guard", "--model", models.a).code == 0
    # The vendor rotates: a new key, and the stolen one revoked on the registry.
    registry.add_key("rot", Ed25519PrivateKey.from_private_bytes(bytes([72]) * 32))
    registry.admin("key", "revoke", "rot", key_id(stolen))
    # The thief signs 1.1.0 with the stolen key; the proxy slips it into the real index.
    forged = build_patch("rot/guard", "1.1.0", models.fingerprint_a, stolen, seed=9)
    blob = "/blobs/sha256/" + hashlib.sha256(forged).hexdigest()
    real = hostile.fetch(index_path("rot/guard"))
    hostile.overrides[index_path("rot/guard")] = rewrite(
        real, lambda index: with_release(index, "1.1.0", forged, blob, models.fingerprint_a)
    )
    hostile.overrides[blob] = Answer(200, {}, forged)
    result = ppatch("install", "rot/guard", "--upgrade", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert f"revoked key {key_id(stolen)!r}" in result.err
    assert installed(ppatch, models.a) == [("rot/guard", "1.0.0")]


def test_trust_shows_the_old_and_new_keys_and_needs_yes(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    old = namespace_with_key(registry, "turn", 81)
    registry.publish(build_patch("turn/guard", "1.0.0", models.fingerprint_a, old))
    assert ppatch("install", "turn/guard", "--model", models.a).code == 0
    new = Ed25519PrivateKey.from_private_bytes(bytes([82]) * 32)
    registry.add_key("turn", new)
    registry.admin("key", "revoke", "turn", key_id(old))
    refused = ppatch("trust", "turn")  # stdin is not a terminal in tests
    assert refused.code == ExitCode.USAGE
    assert key_id(old) in refused.out and key_id(new) in refused.out
    assert "--yes" in refused.err
    accepted = ppatch("trust", "turn", "--yes")
    assert accepted.code == 0, accepted.err
    from ppatch import trust

    assert trust.pinned_keys(hostile.url, "turn") == {key_id(new): public_key_to_pem(new).decode()}


def test_a_replayed_old_index_does_not_downgrade_an_upgrade(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    key = registry.keys["acme"]
    registry.publish(build_patch("acme/replay", "1.0.0", models.fingerprint_a, key))
    recorded = hostile.fetch(index_path("acme/replay"))  # the attacker keeps this answer
    registry.publish(build_patch("acme/replay", "1.1.0", models.fingerprint_a, key, seed=1))
    assert ppatch("install", "acme/replay", "--model", models.a).code == 0
    assert installed(ppatch, models.a) == [("acme/replay", "1.1.0")]
    hostile.overrides[index_path("acme/replay")] = recorded
    result = ppatch("install", "acme/replay", "--upgrade", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "refusing to downgrade acme/replay from 1.1.0 to 1.0.0" in result.err
    assert installed(ppatch, models.a) == [("acme/replay", "1.1.0")]
    # Asked for on purpose, the downgrade happens.
    allowed = ppatch(
        "install", "acme/replay", "--upgrade", "--allow-downgrade", "--model", models.a
    )
    assert allowed.code == 0, allowed.err
    assert installed(ppatch, models.a) == [("acme/replay", "1.0.0")]


def test_an_endless_blob_stops_at_the_indexed_length(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    data = build_patch("acme/endless", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    registry.publish(data)
    hostile.overrides["/blobs/sha256/" + hashlib.sha256(data).hexdigest()] = 64 * 1024 * 1024
    before = stored_files()
    result = ppatch("install", "acme/endless", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert f"more than the {len(data)} bytes the index gives" in result.err
    assert stored_files() == before


def test_a_blob_url_on_another_host_is_refused(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    data = build_patch("acme/elsewhere", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    registry.publish(data)
    real = hostile.fetch(index_path("acme/elsewhere"))

    def elsewhere(index: Any) -> Any:
        for release in index["releases"]:
            for artifact in release["artifacts"]:
                artifact["url"] = registry.url + artifact["url"]  # the real one: another origin
        return index

    hostile.overrides[index_path("acme/elsewhere")] = rewrite(real, elsewhere)
    before = stored_files()
    result = ppatch("install", "acme/elsewhere", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "blobs come only from the registry or a configured mirror" in result.err
    assert stored_files() == before


def test_outdated_warns_that_an_unsigned_registry_cannot_confirm_freshness(
    ppatch: Any, registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    assert ppatch("install", "acme/harm", "--model", models.a).code == 0
    result = ppatch("outdated", "--model", models.a)
    assert result.code == 0, result.err  # the exit code contract is unchanged
    assert result.err == (
        f"ppatch: warning: {hostile.url} does not sign its index: freshness not confirmed (a "
        "replayed or frozen answer, or a hidden yank, would go unnoticed)\n"
    )
    assert result.out == "acme/harm 1.0.0  up to date\n"
