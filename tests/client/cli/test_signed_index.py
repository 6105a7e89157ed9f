"""The client against a registry that signs its index (TUF), and a hostile proxy in front.

A registry of this module's own runs `ppatch-registry tuf init`; the client pins its root on
first contact, then refuses what the proxy makes of the answers. `outdated`: an old timestamp
replayed (rollback), an expired one (freeze), a rewritten update check (not even asked), a
registry that stops serving the signed index. `install`, `upgrade`, `install -r` and `trust`:
a hidden yank, a hidden newer release, a substituted artifact, a keys endpoint that lies, a
replayed package index or timestamp, a lockfile entry the signed targets lack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ppatch.errors import ExitCode
from tests.client.conftest import Models, Registry, build_patch, stored_files
from tests.client.hostile_registry import Answer, HostileRegistry, hostile_registry, rewrite

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def signed_registry(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("signed-registry")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env["PPATCH_REGISTRY_HOME"] = str(home)
    server = Registry(home=home, env=env)
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
    assert "pinned the signed-index root of" in result.err and "sha256:" in result.err
    first = outdated(ppatch, models.a)
    assert first.code == 0, first.err
    assert "pinned" not in first.err
    recorded = hostile.fetch("/tuf/timestamp.json")
    publish(signed_registry, "acme/rollback", "1.1.0", models, seed=1)
    seen = outdated(ppatch, models.a)
    assert seen.code == ExitCode.UPDATES_AVAILABLE, seen.err
    hostile.overrides["/tuf/timestamp.json"] = recorded
    replayed = outdated(ppatch, models.a)
    assert replayed.code == ExitCode.STALE_INDEX
    assert "was rolled back" in replayed.err
    # Nothing is reported as up to date: --json prints only the error object.
    error = json.loads(replayed.out)["error"]
    assert error["exit_code"] == ExitCode.STALE_INDEX and "was rolled back" in error["message"]


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


def test_the_unsigned_update_check_is_not_asked_or_believed(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/phantom", "1.0.0", models)
    assert ppatch("install", "acme/phantom", "--model", models.a).code == 0
    fake = {"results": [{"name": "acme/phantom", "latest": "6.6.6", "found": True}]}
    hostile.overrides["/api/v1/updates"] = Answer(200, {}, json.dumps(fake).encode())
    hostile.seen.clear()
    result = outdated(ppatch, models.a)
    assert result.code == 0, result.err
    [row] = json.loads(result.out)["packages"]
    assert (row["latest"], row["update_available"], row["found"]) == ("1.0.0", False, True)
    # The root probe and the timestamp; snapshot and targets are the cached, verified ones.
    assert hostile.seen == ["GET /tuf/2.root.json", "GET /tuf/timestamp.json"], hostile.seen


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


# -- install and upgrade against the signed index ------------------------------------------


def installed(ppatch: Any, model: Path) -> list[tuple[str, str]]:
    result = ppatch("list", "--model", model, "--json")
    assert result.code == 0, result.err
    return [(p["name"], p["version"]) for p in json.loads(result.out)["packages"]]


def index_path(full_name: str) -> str:
    return f"/api/v1/packages/{full_name}"


def test_install_pins_the_root_and_takes_the_yank_state_from_the_signed_index(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    from ppatch.registry.client import RegistryClient

    publish(signed_registry, "acme/exact", "1.0.0", models)
    with RegistryClient(signed_registry.url, token=signed_registry.tokens["acme"]) as client:
        client.set_yanked("acme", "exact", "1.0.0", yanked=True, reason="bad on long prompts")

    def unyank(index: Any) -> Any:
        for release in index["releases"]:
            release["yanked"], release["yanked_reason"] = False, None
        return index

    hostile.overrides[index_path("acme/exact")] = rewrite(
        hostile.fetch(index_path("acme/exact")), unyank
    )
    # An exact pin installs a yanked release, with the warning the signed index calls for.
    result = ppatch("install", "acme/exact@1.0.0", "--model", models.a, "--json")
    assert result.code == 0, result.err
    assert "pinned the signed-index root of" in result.err
    assert "bad on long prompts" in result.err
    [row] = json.loads(result.out)["packages"]
    assert row["yanked"] is True


def test_a_hidden_yank_is_refused_and_nothing_installed(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    from ppatch.registry.client import RegistryClient

    publish(signed_registry, "acme/hy", "1.0.0", models)
    publish(signed_registry, "acme/hy", "1.1.0", models, seed=1)
    with RegistryClient(signed_registry.url, token=signed_registry.tokens["acme"]) as client:
        client.set_yanked("acme", "hy", "1.1.0", yanked=True, reason="leaks prompts")

    def unyank(index: Any) -> Any:
        for release in index["releases"]:
            release["yanked"], release["yanked_reason"] = False, None
        return index

    hostile.overrides[index_path("acme/hy")] = rewrite(hostile.fetch(index_path("acme/hy")), unyank)
    before = stored_files()
    result = ppatch("install", "acme/hy", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "acme/hy 1.1.0 is yanked in the signed index" in result.err
    assert "leaks prompts" in result.err and "hid the yank" in result.err
    assert len(result.err.strip().splitlines()) == 2  # the root pinned, then the refusal
    assert installed(ppatch, models.a) == []
    assert stored_files() == before


def test_a_hidden_newer_release_is_refused_by_upgrade(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/hn", "1.0.0", models)
    assert ppatch("install", "acme/hn", "--model", models.a).code == 0
    publish(signed_registry, "acme/hn", "1.1.0", models, seed=1)

    def hide(index: Any) -> Any:
        index["releases"] = [r for r in index["releases"] if r["version"] != "1.1.0"]
        return index

    hostile.overrides[index_path("acme/hn")] = rewrite(hostile.fetch(index_path("acme/hn")), hide)
    before = stored_files()
    result = ppatch("upgrade", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "hides acme/hn 1.1.0, which its signed index has" in result.err
    assert installed(ppatch, models.a) == [("acme/hn", "1.0.0")]
    assert stored_files() == before
    del hostile.overrides[index_path("acme/hn")]
    assert ppatch("upgrade", "--model", models.a).code == 0
    assert installed(ppatch, models.a) == [("acme/hn", "1.1.0")]


def test_a_substituted_artifact_is_refused_before_download(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/sub", "1.0.0", models)
    # Bytes the vendor's key really signed, but never published: a compromised registry's pick.
    forged = build_patch(
        "acme/sub", "1.0.0", models.fingerprint_a, signed_registry.keys["acme"], seed=7
    )
    digest = hashlib.sha256(forged).hexdigest()

    def substitute(index: Any) -> Any:
        [artifact] = index["releases"][0]["artifacts"]
        artifact.update(sha256=digest, size=len(forged), url=f"/blobs/sha256/{digest}")
        return index

    hostile.overrides[index_path("acme/sub")] = rewrite(
        hostile.fetch(index_path("acme/sub")), substitute
    )
    hostile.overrides[f"/blobs/sha256/{digest}"] = Answer(200, {}, forged)
    before = stored_files()
    result = ppatch("install", "acme/sub", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert f"sha256 {digest}" in result.err and "a substituted artifact" in result.err
    assert f"GET /blobs/sha256/{digest}" not in hostile.seen
    assert installed(ppatch, models.a) == []
    assert stored_files() == before


def test_a_keys_endpoint_hiding_a_revocation_is_not_believed(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    from patchfmt import key_id

    stolen = Ed25519PrivateKey.from_private_bytes(bytes([91]) * 32)
    signed_registry.add_namespace("sgrot", stolen)
    signed_registry.publish(build_patch("sgrot/guard", "1.0.0", models.fingerprint_a, stolen))
    signed_registry.add_key("sgrot", Ed25519PrivateKey.from_private_bytes(bytes([92]) * 32))
    signed_registry.admin("key", "revoke", "sgrot", key_id(stolen))

    def unrevoke(body: Any) -> Any:
        for entry in body["keys"]:
            entry["active"] = True
        return body

    keys = "/api/v1/namespaces/sgrot/keys"
    hostile.overrides[keys] = rewrite(hostile.fetch(keys), unrevoke)
    before = stored_files()
    result = ppatch("install", "sgrot/guard@1.0.0", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert f"revoked key {key_id(stolen)!r}" in result.err
    assert installed(ppatch, models.a) == []
    assert stored_files() == before


def test_a_replayed_index_for_a_first_install_is_refused(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/rp", "1.0.0", models)
    recorded = hostile.fetch(index_path("acme/rp"))
    publish(signed_registry, "acme/rp", "1.1.0", models, seed=1)
    hostile.overrides[index_path("acme/rp")] = recorded
    result = ppatch("install", "acme/rp", "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert "hides acme/rp 1.1.0" in result.err
    assert installed(ppatch, models.a) == []


def test_a_replayed_timestamp_stops_an_install(
    ppatch: Any, signed_registry: Registry, models: Models, hostile: HostileRegistry
) -> None:
    publish(signed_registry, "acme/rts", "1.0.0", models)
    recorded = hostile.fetch("/tuf/timestamp.json")
    publish(signed_registry, "acme/rts", "1.1.0", models, seed=1)
    # The client sees the newer timestamp while installing 1.0.0.
    assert ppatch("install", "acme/rts@1.0.0", "--model", models.a).code == 0
    hostile.overrides["/tuf/timestamp.json"] = recorded
    result = ppatch("install", "acme/rts", "--upgrade", "--model", models.a)
    assert result.code == ExitCode.STALE_INDEX, result.out
    assert "was rolled back" in result.err
    assert installed(ppatch, models.a) == [("acme/rts", "1.0.0")]


def test_a_lockfile_entry_the_signed_index_lacks_is_refused(
    ppatch: Any,
    signed_registry: Registry,
    models: Models,
    hostile: HostileRegistry,
    tmp_path: Path,
) -> None:
    publish(signed_registry, "acme/lk", "1.0.0", models)
    forged = build_patch(
        "acme/lk", "1.0.0", models.fingerprint_a, signed_registry.keys["acme"], seed=8
    )
    digest = hashlib.sha256(forged).hexdigest()
    hostile.overrides[f"/blobs/sha256/{digest}"] = Answer(200, {}, forged)
    lock = tmp_path / "ppatch.lock"
    lock.write_text(
        f'format = "ppatch-lock/1"\nmodel_fingerprint = "{models.fingerprint_a}"\n\n'
        f'[[patches]]\nname = "acme/lk"\nversion = "1.0.0"\nsha256 = "{digest}"\n'
        f'size = {len(forged)}\nurl = "/blobs/sha256/{digest}"\n'
    )
    before = stored_files()
    result = ppatch("install", "-r", lock, "--model", models.a)
    assert result.code == ExitCode.VERIFICATION, result.out
    assert f"lockfile entry acme/lk 1.0.0 has sha256 {digest}" in result.err
    assert installed(ppatch, models.a) == []
    assert stored_files() == before


def test_trust_pins_the_signed_keys_not_the_keys_endpoint(
    ppatch: Any, signed_registry: Registry, hostile: HostileRegistry
) -> None:
    from patchfmt import key_id, public_key_to_pem
    from ppatch import trust

    real = Ed25519PrivateKey.from_private_bytes(bytes([93]) * 32)
    signed_registry.add_namespace("sgtrust", real)
    evil = Ed25519PrivateKey.from_private_bytes(bytes([94]) * 32)
    fake = {
        "namespace": "sgtrust",
        "keys": [
            {"key_id": key_id(evil), "public_key": public_key_to_pem(evil).decode(), "active": True}
        ],
    }
    hostile.overrides["/api/v1/namespaces/sgtrust/keys"] = Answer(
        200, {}, json.dumps(fake).encode()
    )
    result = ppatch("trust", "sgtrust")
    assert result.code == 0, result.err
    assert trust.pinned_keys(hostile.url, "sgtrust") == {
        key_id(real): public_key_to_pem(real).decode()
    }
