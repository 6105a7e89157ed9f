"""`ppatch outdated` against a registry that signs its index (TUF), and a hostile proxy in front.

A registry of this module's own runs `ppatch-registry tuf init`; the client pins its root on
first contact, then refuses what the proxy makes of the answers: an old timestamp replayed
(rollback), an expired one (freeze), a yank hidden from the update check, a release the signed
index never had, and a registry that stops serving the signed index.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ppatch.errors import ExitCode
from tests.client.conftest import Models, Registry, build_patch, free_port
from tests.client.hostile_registry import Answer, HostileRegistry, hostile_registry, rewrite

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def signed_registry(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("signed-registry")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env["PPATCH_REGISTRY_HOME"] = str(home)
    port = free_port()
    server = Registry(url=f"http://127.0.0.1:{port}", port=port, home=home, env=env)
    server.add_namespace("acme", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
    server.admin("tuf", "init", "--key-dir", str(home / "offline-root-keys"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hostile(
    signed_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HostileRegistry]:
    with hostile_registry(signed_registry.url) as proxy:
        monkeypatch.setenv("PPATCH_REGISTRY", proxy.url)
        yield proxy


def publish(registry: Registry, name: str, version: str, models: Models, seed: int = 0) -> None:
    registry.publish(
        build_patch(name, version, models.fingerprint_a, registry.keys["acme"], seed=seed)
    )


def outdated(ppatch: Any, model: Path) -> Any:
    return ppatch("outdated", "--model", model, "--json")


def test_first_contact_pins_the_root_and_a_replayed_timestamp_is_a_rollback(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/rollback", "1.0.0", models)
    result = ppatch("install", "acme/rollback", "--model", models.a)
    assert result.code == 0, result.err
    first = outdated(ppatch, models.a)
    assert first.code == 0, first.err
    assert "pinned the signed-index root of" in first.err and "sha256:" in first.err
    recorded = hostile.fetch("/tuf/timestamp.json")
    publish(signed_registry, "acme/rollback", "1.1.0", models, seed=1)
    seen = outdated(ppatch, models.a)
    assert seen.code == ExitCode.UPDATES_AVAILABLE, seen.err
    hostile.overrides["/tuf/timestamp.json"] = recorded
    replayed = outdated(ppatch, models.a)
    assert replayed.code == ExitCode.STALE_INDEX
    assert "was rolled back" in replayed.err
    assert replayed.out == ""  # nothing reported as up to date


def test_an_expired_timestamp_is_refused(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    from tuf.api.metadata import Metadata

    from registry_server import tuf_repo

    publish(signed_registry, "acme/frozen", "1.0.0", models)
    assert ppatch("install", "acme/frozen", "--model", models.a).code == 0
    assert outdated(ppatch, models.a).code == 0
    online = tuf_repo.load_signer(signed_registry.home / "tuf" / "online-key.pem")
    frozen: Metadata[Any] = Metadata.from_bytes(hostile.fetch("/tuf/timestamp.json").body)
    frozen.signed.version += 1
    frozen.signed.expires = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    frozen.signatures.clear()
    frozen.sign(online)
    hostile.overrides["/tuf/timestamp.json"] = Answer(200, {}, frozen.to_bytes())
    result = outdated(ppatch, models.a)
    assert result.code == ExitCode.STALE_INDEX
    assert "has expired" in result.err


def test_a_yank_hidden_from_the_update_check_is_still_reported(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/hidden", "1.0.0", models)
    assert ppatch("install", "acme/hidden", "--model", models.a).code == 0
    from ppatch.registry.client import RegistryClient

    with RegistryClient(signed_registry.url, token=signed_registry.tokens["acme"]) as client:
        client.set_yanked("acme", "hidden", "1.0.0", yanked=True, reason="leaks prompts")

    def hide(answer: Any) -> Any:
        for item in answer["results"]:
            item["yanked"], item["yanked_reason"] = False, None
        return answer

    real = hostile.fetch(
        "/api/v1/updates",
        "POST",
        json.dumps(
            {"installed": [{"name": "acme/hidden", "version": "1.0.0",
                            "fingerprint": models.fingerprint_a}]}
        ).encode(),
    )  # fmt: skip
    hostile.overrides["/api/v1/updates"] = rewrite(real, hide)
    result = outdated(ppatch, models.a)
    assert result.code == ExitCode.UPDATES_AVAILABLE, result.err
    [row] = json.loads(result.out)["packages"]
    assert (row["yanked"], row["yanked_reason"]) == (True, "leaks prompts")


def test_a_release_the_signed_index_never_had_is_refused(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/phantom", "1.0.0", models)
    assert ppatch("install", "acme/phantom", "--model", models.a).code == 0
    fake = {"results": [{"name": "acme/phantom", "latest": "6.6.6", "found": True}]}
    hostile.overrides["/api/v1/updates"] = Answer(200, {}, json.dumps(fake).encode())
    result = outdated(ppatch, models.a)
    assert result.code == ExitCode.VERIFICATION
    assert "6.6.6" in result.err and "never signed" in result.err


def test_a_registry_that_stops_signing_is_refused_once_pinned(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/unsigned", "1.0.0", models)
    assert ppatch("install", "acme/unsigned", "--model", models.a).code == 0
    assert outdated(ppatch, models.a).code == 0
    gone = Answer(404, {}, b'{"error": {"code": "not_found", "message": "no"}}')
    hostile.overrides["/tuf/timestamp.json"] = gone
    result = outdated(ppatch, models.a)
    assert result.code == ExitCode.VERIFICATION
    assert "no longer serves the signed index" in result.err
