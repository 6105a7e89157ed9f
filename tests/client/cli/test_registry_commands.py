"""End to end: the `ppatch` registry commands against a real `ppatch-registry serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import public_key_to_pem
from ppatch import constants, store
from tests.client.conftest import Models, Registry, build_patch, stored_files
from tests.ports import refused_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def use_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("PPATCH_REGISTRY", registry.url)
    return registry


def installed(ppatch: Any, model: Path) -> list[tuple[str, str]]:
    result = ppatch("list", "--model", model, "--json")
    assert result.code == 0, result.err
    return [(p["name"], p["version"]) for p in json.loads(result.out)["packages"]]


def outdated(ppatch: Any, model: Path) -> tuple[int, dict[str, Any]]:
    result = ppatch("outdated", "--model", model, "--json")
    assert result.code in (0, 1), result.err
    return result.code, {row["name"]: row for row in json.loads(result.out)["packages"]}


def test_install_outdated_yank_upgrade_freeze_remove_and_offline_reinstall(
    ppatch: Any, registry: Registry, models: Models, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    # A bare name resolves to acme's package: beta/toxicity has no artifact for model A.
    result = ppatch("install", "toxicity@1.2", "--model", models.a)
    assert result.code == 0, result.err
    assert "installed acme/toxicity 1.2.1" in result.out
    assert installed(ppatch, models.a) == [("acme/toxicity", "1.2.1")]
    [path] = store.installed_patch_paths(models.fingerprint_a)
    from patchfmt import read_patch

    assert read_patch(path).manifest.base_model.fingerprint == models.fingerprint_a
    assert "pinned 1 key(s) for namespace 'acme'" in result.err

    code, rows = outdated(ppatch, models.a)
    assert code == 1
    assert rows["acme/toxicity"]["latest"] == "1.3.0"
    assert rows["acme/toxicity"]["update_available"] is True

    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    result = ppatch("yank", "acme/toxicity@1.2.1", "--reason", "refuses too little")
    assert result.code == 0, result.err
    code, rows = outdated(ppatch, models.a)
    assert code == 1
    assert rows["acme/toxicity"]["yanked"] is True
    assert rows["acme/toxicity"]["yanked_reason"] == "refuses too little"
    text = ppatch("outdated", "--model", models.a)
    assert text.code == 1
    assert "YANKED: refuses too little" in text.out

    result = ppatch("upgrade", "--model", models.a)
    assert result.code == 0, result.err
    assert "upgraded acme/toxicity 1.3.0 (was 1.2.1)" in result.out
    assert installed(ppatch, models.a) == [("acme/toxicity", "1.3.0")]
    assert outdated(ppatch, models.a)[0] == 0

    lock = tmp_path / "ppatch.lock"
    assert ppatch("freeze", "--model", models.a, "-o", lock).code == 0
    assert 'version = "1.3.0"' in lock.read_text()
    result = ppatch("remove", "toxicity", "--model", models.a)
    assert result.code == 0, result.err
    assert installed(ppatch, models.a) == []

    with registry.stopped():
        result = ppatch("install", "-r", lock, "--model", models.a)
        assert result.code == 0, result.err
        assert installed(ppatch, models.a) == [("acme/toxicity", "1.3.0")]
        # Anything that needs the registry now fails with the network exit code.
        down = ppatch("outdated", "--model", models.a)
        assert down.code == 6
        assert down.err.startswith("ppatch: error: cannot reach the registry at")
        assert down.err.count("\n") == 1

    # The exact yanked version can still be had on purpose, with a warning.
    result = ppatch("install", "acme/toxicity@1.2.1", "--model", models.b)
    assert result.code == 0, result.err
    assert "warning: acme/toxicity 1.2.1 is yanked: refuses too little" in result.err
    assert ppatch("unyank", "acme/toxicity@1.2.1").code == 0
    assert ppatch("install", "acme/toxicity@1.2", "--model", models.b).out.strip() == (
        "acme/toxicity 1.2.1 already installed"
    )


def test_dry_run_json_and_idempotent_install(ppatch: Any, models: Models) -> None:
    result = ppatch("install", "acme/harm", "--model", models.a, "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["dry_run"] is True
    assert [(p["name"], p["version"], p["action"]) for p in plan["packages"]] == [
        ("acme/harm", "1.0.0", "install")
    ]
    assert stored_files() == []
    assert ppatch("install", "acme/harm", "--model", models.a).code == 0
    again = ppatch("install", "acme/harm", "--model", models.a)
    assert again.out.strip() == "acme/harm 1.0.0 already installed"


def test_search_and_info(ppatch: Any, models: Models) -> None:
    result = ppatch("search", "toxicity", "--json")
    assert result.code == 0, result.err
    names = {r["name"] for r in json.loads(result.out)["packages"]}
    assert {"acme/toxicity", "beta/toxicity"} <= names
    for_b = ppatch("search", "toxicity", "--model", models.b, "--json")
    names_b = {r["name"] for r in json.loads(for_b.out)["packages"]}
    assert "beta/toxicity" in names_b
    assert "acme/harm" not in names_b
    info = ppatch("info", "acme/harm", "--json")
    assert info.code == 0
    release = json.loads(info.out)["releases"][0]
    assert release["artifacts"][0]["fingerprint"] == models.fingerprint_a
    assert "1.0.0" in ppatch("info", "acme/harm").out


def test_bare_name_in_two_namespaces_is_refused_with_both_listed(
    ppatch: Any, models: Models
) -> None:
    result = ppatch("install", "toxicity", "--model", models.b)
    assert result.code == 2
    assert "acme/toxicity, beta/toxicity" in result.err
    assert stored_files() == []


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["install", "Acme/Tox!", "--model", "A"], 2, "invalid package spec 'Acme/Tox!'"),
        (["install", "acme/toxicty", "--model", "A"], 4, "did you mean acme/toxicity"),
        (["install", "acme/harm@9", "--model", "A"], 4, "(available: 1.0.0)"),
        (["install", "acme/harm", "--model", "B"], 4, "has no artifact for this model"),
        (["install", "acme/harm", "--model", "/no/such/model"], 4, "'/no/such/model'"),
        (["install", "--model", "A"], 2, "nothing to install"),
        (["install", "-r", "/no/such.lock", "--model", "A"], 4, "does not exist"),
        (["remove", "harm", "--model", "A"], 4, "'harm' is not installed"),
        (["yank", "acme/harm", "--reason", "x"], 2, "expected NAMESPACE/NAME@VERSION"),
        (["publish", "/no/such.ppatch"], 4, "does not exist"),
        (["info", "acme"], 2, "expected NAMESPACE/NAME"),
        (["trust", "acme", "--public-key", "/no/such.pub"], 4, "does not exist"),
    ],
)
def test_bad_input_exits_with_one_line_and_writes_nothing(
    ppatch: Any, models: Models, argv: list[str], code: int, message: str
) -> None:
    argv = [{"A": str(models.a), "B": str(models.b)}.get(arg, arg) for arg in argv]
    result = ppatch(*argv)
    assert result.code == code, result.err
    assert message in result.err
    assert result.err.startswith("ppatch: error: ")
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert stored_files() == []


def test_network_down_is_exit_6_and_writes_nothing(ppatch: Any, models: Models) -> None:
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}"
        result = ppatch("install", "acme/harm", "--model", models.a, "--registry", dead)
    assert result.code == 6
    # One line: the fixed prefix naming the registry, then the reason (checked against a
    # pattern, not against a piece of the same message).
    prefix = f"ppatch: error: cannot reach the registry at {dead!r}: "
    assert re.fullmatch(re.escape(prefix) + r"\S[^\n]*\n", result.err), result.err
    assert "refused" in result.err.lower()
    assert stored_files() == []


def test_publish_needs_a_valid_token(
    ppatch: Any, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    registry: Registry,
) -> None:  # fmt: skip
    patch_file = tmp_path / "new.ppatch"
    patch_file.write_bytes(
        build_patch("acme/newpkg", "0.1.0", models.fingerprint_a, registry.keys["acme"])
    )
    no_token = ppatch("publish", patch_file)
    assert no_token.code == 7
    assert "no token for" in no_token.err
    monkeypatch.setenv("PPATCH_TOKEN", "not-a-real-token")
    bad = ppatch("publish", patch_file)
    assert bad.code == 7
    assert "(401 unauthorized)" in bad.err
    assert ppatch("info", "acme/newpkg").code == 4
    unsigned = tmp_path / "unsigned.ppatch"
    unsigned.write_bytes(build_patch("acme/newpkg", "0.1.0", models.fingerprint_a, None))
    refused = ppatch("publish", unsigned)
    assert refused.code == 3
    assert "is not signed" in refused.err


def test_login_stores_the_token_for_publish(
    ppatch: Any, models: Models, tmp_path: Path, registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("PPATCH_REGISTRY")
    result = ppatch("login", "--registry", registry.url, "--token", registry.tokens["acme"])
    assert result.code == 0, result.err
    assert constants.credentials_file().stat().st_mode & 0o777 == 0o600
    assert registry.tokens["acme"] not in constants.config_file().read_text()
    patch_file = tmp_path / "logged.ppatch"
    patch_file.write_bytes(
        build_patch("acme/logged", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    )
    # No --registry and no PPATCH_REGISTRY: login made this registry the default.
    published = ppatch("publish", patch_file)
    assert published.code == 0, published.err
    assert "published acme/logged 1.0.0" in published.out
    again = ppatch("publish", patch_file)  # the same bytes again is a no-op
    assert again.code == 0, again.err


def test_a_tampered_blob_is_refused_and_nothing_installed(
    ppatch: Any, registry: Registry, models: Models
) -> None:
    index = json.loads(ppatch("info", "acme/bias", "--json").out)
    artifact = index["releases"][0]["artifacts"][0]
    blob = registry.blob_file(artifact["sha256"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = ppatch("install", "acme/bias", "--model", models.a)
    assert result.code == 3
    assert "does not match the index" in result.err
    assert stored_files() == []
    assert not list((constants.blobs_dir() / "tmp").glob("*"))


def test_a_changed_namespace_key_is_refused(
    ppatch: Any, registry: Registry, models: Models, tmp_path: Path
) -> None:
    first_key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    registry.add_namespace("gamma", first_key)
    registry.publish(build_patch("gamma/filter", "1.0.0", models.fingerprint_a, first_key))
    assert ppatch("install", "gamma/filter@1.0.0", "--model", models.a).code == 0
    before = stored_files()

    # The namespace's key is replaced (compromise, or a rotation nobody announced).
    from patchfmt import key_id

    new_key = Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)
    registry.admin("key", "revoke", "gamma", key_id(first_key))
    registry.add_key("gamma", new_key)
    registry.publish(build_patch("gamma/filter", "1.1.0", models.fingerprint_a, new_key))
    result = ppatch("install", "gamma/filter@1.1.0", "--model", models.a)
    assert result.code == 3
    assert f"signed with key {key_id(new_key)!r}, which is not pinned" in result.err
    assert "ppatch trust gamma" in result.err
    assert stored_files() == before

    # Accepting it on purpose, with the key given out of band.
    pub = tmp_path / "gamma.pub"
    pub.write_bytes(public_key_to_pem(new_key))
    assert ppatch("trust", "gamma", "--public-key", pub).code == 0
    assert ppatch("install", "gamma/filter@1.1.0", "--model", models.a).code == 0
    assert installed(ppatch, models.a) == [("gamma/filter", "1.1.0")]


def test_two_concurrent_installs_on_one_model_both_land(
    registry: Registry, models: Models, ppatch: Any
) -> None:
    env = {**os.environ, "PPATCH_REGISTRY": registry.url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ppatch.cli.main", "install", spec, "--model", str(models.a)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for spec in ("acme/harm", "acme/fluency")
    ]
    for process in processes:
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    assert sorted(installed(ppatch, models.a)) == [
        ("acme/fluency", "1.0.0"),
        ("acme/harm", "1.0.0"),
    ]
    assert len(store.installed_patch_paths(models.fingerprint_a)) == 2


def test_a_lockfile_refuses_another_model_and_bad_lockfiles_are_usage_errors(
    ppatch: Any, models: Models, tmp_path: Path
) -> None:
    assert ppatch("install", "acme/harm", "--model", models.a).code == 0
    lock = tmp_path / "a.lock"
    assert ppatch("freeze", "--model", models.a, "-o", lock).code == 0
    before = stored_files()
    wrong = ppatch("install", "-r", lock, "--model", models.b)
    assert wrong.code == 3
    assert f"frozen for model {models.fingerprint_a}" in wrong.err
    assert models.fingerprint_b in wrong.err
    broken = tmp_path / "broken.lock"
    broken.write_text('format = "ppatch-lock/1"\nmodel_fingerprint = 7\n')
    bad = ppatch("install", "-r", broken, "--model", models.a)
    assert bad.code == 2
    assert "model_fingerprint 7 is not 'sha256:<hex>'" in bad.err
    assert stored_files() == before


def test_lockfile_dry_run_and_download_of_a_missing_blob(
    ppatch: Any, models: Models, tmp_path: Path
) -> None:
    assert ppatch("install", "acme/fluency", "--model", models.a).code == 0
    lock = tmp_path / "a.lock"
    assert ppatch("freeze", "--model", models.a, "-o", lock).code == 0
    # A fresh machine: nothing installed, nothing cached.
    for path in stored_files():
        (constants.data_dir() / path).unlink()
    plan = ppatch("install", "-r", lock, "--model", models.a, "--dry-run", "--json")
    assert plan.code == 0, plan.err
    assert [p["action"] for p in json.loads(plan.out)["packages"]] == ["install"]
    assert stored_files() == []
    done = ppatch("install", "-r", lock, "--model", models.a)
    assert done.code == 0, done.err
    assert installed(ppatch, models.a) == [("acme/fluency", "1.0.0")]


def test_offline_mode_refuses_the_network(
    ppatch: Any, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPATCH_OFFLINE", "1")
    result = ppatch("install", "acme/harm", "--model", models.a)
    assert result.code == 6
    assert "PPATCH_OFFLINE is set" in result.err
    assert stored_files() == []


def test_upgrade_of_something_not_installed_and_nothing_to_check(
    ppatch: Any, models: Models
) -> None:
    missing = ppatch("upgrade", "harm", "--model", models.a)
    assert missing.code == 4
    assert "not installed on this model: harm" in missing.err
    empty = ppatch("outdated", "--model", models.a, "--json")
    assert empty.code == 0
    assert json.loads(empty.out)["packages"] == []


def test_upgrade_dry_run_changes_nothing(ppatch: Any, models: Models) -> None:
    assert ppatch("install", "acme/toxicity@1.2.0", "--model", models.b).code == 0
    plan = ppatch("upgrade", "--model", models.b, "--dry-run", "--json")
    assert plan.code == 0, plan.err
    [package] = json.loads(plan.out)["packages"]
    assert (package["action"], package["version"], package["previous_version"]) == (
        "upgrade",
        "1.3.0",
        "1.2.0",
    )
    assert installed(ppatch, models.b) == [("acme/toxicity", "1.2.0")]


def test_trust_repins_from_the_registry(ppatch: Any, registry: Registry) -> None:
    from patchfmt import key_id

    result = ppatch("trust", "beta")
    assert result.code == 0, result.err
    assert key_id(registry.keys["beta"]) in result.out
    from ppatch import trust

    assert list(trust.pinned_keys(registry.url, "beta") or {}) == [key_id(registry.keys["beta"])]


def test_login_reads_the_token_from_stdin(
    ppatch: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    token = "ppr_0123456789abcdef_" + "A" * 43
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    result = ppatch("login", "--registry", registry.url)
    assert result.code == 0, result.err
    assert "not checked" in result.out
    from ppatch import config

    monkeypatch.delenv("PPATCH_TOKEN", raising=False)
    assert config.load_token(registry.url) == token


def test_upgrade_moves_off_a_yanked_version_even_to_an_older_one(
    ppatch: Any, registry: Registry, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("1.0.0", "1.1.0"):
        registry.publish(
            build_patch("acme/rollback", version, models.fingerprint_a, registry.keys["acme"])
        )
    assert ppatch("install", "acme/rollback", "--model", models.a).code == 0
    assert installed(ppatch, models.a) == [("acme/rollback", "1.1.0")]
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    assert ppatch("yank", "acme/rollback@1.1.0", "--reason", "regression").code == 0
    result = ppatch("upgrade", "--model", models.a)
    assert result.code == 0, result.err
    assert "downgraded acme/rollback 1.0.0 (was 1.1.0)" in result.out
    assert outdated(ppatch, models.a)[0] == 0


# -- issue 20: honest feedback ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["garbage", "ppr_short_secret", "ppr_0123456789abcdef_" + "A" * 42]
)
def test_login_refuses_what_is_not_shaped_like_a_token(
    ppatch: Any, registry: Registry, token: str
) -> None:
    result = ppatch("login", "--registry", registry.url, "--token", token)
    assert result.code == 2
    assert "is not a registry token" in result.err
    assert not constants.credentials_file().exists()
    assert not constants.config_file().exists()


def test_login_check_asks_the_registry(ppatch: Any, registry: Registry) -> None:
    good = ppatch(
        "login", "--registry", registry.url, "--token", registry.tokens["acme"], "--check"
    )
    assert good.code == 0, good.err
    assert "checked: namespace 'acme', scope 'admin'" in good.out
    constants.credentials_file().unlink()
    forged = registry.tokens["acme"][:-4] + "AAAA"
    bad = ppatch("login", "--registry", registry.url, "--token", forged, "--check")
    assert bad.code == 7
    assert "invalid token" in bad.err
    assert not constants.credentials_file().exists()


def test_publish_again_says_nothing_changed_and_json_says_created(
    ppatch: Any, registry: Registry, models: Models, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    patch_file = tmp_path / "again.ppatch"
    patch_file.write_bytes(
        build_patch("acme/again", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    )
    first = ppatch("publish", patch_file, "--json")
    assert first.code == 0, first.err
    document = json.loads(first.out)
    assert document["created"] is True
    assert (document["name"], document["version"]) == ("acme/again", "1.0.0")
    assert document["registry"] == registry.url
    second = ppatch("publish", patch_file)
    assert second.code == 0, second.err
    assert "already published (identical bytes; nothing changed): acme/again 1.0.0" in second.out
    assert json.loads(ppatch("publish", patch_file, "--json").out)["created"] is False


def test_yank_and_unyank_say_what_changed(
    ppatch: Any, registry: Registry, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish(
        build_patch("acme/yankme", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    )
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    not_yanked = ppatch("unyank", "acme/yankme@1.0.0")
    assert (not_yanked.code, not_yanked.out) == (
        0,
        "acme/yankme 1.0.0 was not yanked; nothing changed\n",
    )
    yanked = json.loads(ppatch("yank", "acme/yankme@1.0.0", "--reason", "broken", "--json").out)
    assert yanked == {
        "name": "acme/yankme", "version": "1.0.0", "yanked": True,
        "yanked_reason": "broken", "changed": True,
    }  # fmt: skip
    again = ppatch("yank", "acme/yankme@1.0.0", "--reason", "really broken")
    assert again.out == "acme/yankme 1.0.0 was already yanked; reason now: really broken\n"
    undone = json.loads(ppatch("unyank", "acme/yankme@1.0.0", "--json").out)
    assert (undone["yanked"], undone["changed"]) == (False, True)
    assert json.loads(ppatch("unyank", "acme/yankme@1.0.0", "--json").out)["changed"] is False
    missing = ppatch("yank", "acme/yankme@9.9.9", "--reason", "x", "--json")
    assert missing.code == 4
    assert json.loads(missing.out)["error"]["exit_code"] == 4


def test_one_package_twice_in_one_install_is_a_usage_error(ppatch: Any, models: Models) -> None:
    for specs in (
        ["acme/harm@1.0.0", "acme/harm@1.0"],
        ["harm", "harm@1.0.0"],
        ["harm", "acme/harm"],
    ):
        result = ppatch("install", *specs, "--model", models.a)
        assert result.code == 2
        assert "given more than once" in result.err
    assert stored_files() == []


def test_outdated_and_upgrade_say_when_nothing_is_installed(ppatch: Any, models: Models) -> None:
    result = ppatch("outdated", "--model", models.b)
    assert (result.code, result.out) == (0, "")
    assert "no patches installed" in result.err and "nothing to check" in result.err
    document = json.loads(ppatch("outdated", "--model", models.b, "--json").out)
    assert (document["outdated"], document["packages"]) == (False, [])
    upgraded = ppatch("upgrade", "--model", models.b)
    assert upgraded.code == 0 and "nothing to upgrade" in upgraded.err


def test_outdated_json_reports_an_unreachable_registry_as_json(
    ppatch: Any, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ppatch("install", "acme/fluency", "--model", models.a).code == 0
    monkeypatch.setenv("PPATCH_HTTP_RETRIES", "0")
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}"
        result = ppatch("outdated", "--model", models.a, "--registry", dead, "--json")
    assert result.code == 6
    error = json.loads(result.out)["error"]
    assert (error["code"], error["exit_code"]) == ("network", 6)
    assert dead in error["message"]


def test_a_yanked_installed_release_is_never_hidden(
    ppatch: Any, registry: Registry, models: Models, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key = registry.keys["acme"]
    for version in ("1.0.0", "1.1.0"):
        registry.publish(build_patch("acme/yk", version, models.fingerprint_b, key))
    assert ppatch("install", "acme/yk@1.1.0", "--model", models.b).code == 0
    lock = tmp_path / "ppatch.lock"
    assert ppatch("freeze", "--model", models.b, "-o", lock).code == 0
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    assert ppatch("yank", "acme/yk@1.1.0", "--reason", "leaks prompts").code == 0
    monkeypatch.delenv("PPATCH_TOKEN")

    pinned = ppatch("install", "acme/yk@1.1.0", "--model", models.b, "--dry-run", "--json")
    assert pinned.code == 0, pinned.err
    [row] = json.loads(pinned.out)["packages"]
    assert (row["action"], row["yanked"], row["yanked_reason"]) == (
        "unchanged", True, "leaks prompts"
    )  # fmt: skip
    assert "acme/yk 1.1.0 is yanked: leaks prompts" in pinned.err
    for spec in ("acme/yk@1.x", "acme/yk@latest", "acme/yk"):
        result = ppatch("install", spec, "--model", models.b)
        assert result.code == 0, result.err
        assert "acme/yk 1.1.0 already installed" in result.out
        assert "ppatch: warning: acme/yk 1.1.0 is yanked: leaks prompts" in result.err
    locked = ppatch("install", "-r", lock, "--model", models.b, "--json")
    assert locked.code == 0, locked.err
    assert json.loads(locked.out)["packages"][0]["yanked"] is True
    assert "acme/yk 1.1.0 is yanked: leaks prompts; installed as the lockfile pins it" in locked.err
    # Offline with the index cached, the warning still comes; -qq silences it.
    monkeypatch.setenv("PPATCH_OFFLINE", "1")
    assert "is yanked" in ppatch("install", "acme/yk@1.x", "--model", models.b).err
    assert ppatch("-qq", "install", "acme/yk@1.x", "--model", models.b).err == ""


def test_outdated_and_upgrade_use_the_registry_of_the_install(
    ppatch: Any, registry: Registry, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed with --registry under another spelling of the same registry.
    with refused_port() as dead_port:
        spelling = registry.url.replace("http://", "HTTP://") + "/"
        monkeypatch.setenv("PPATCH_REGISTRY", f"http://127.0.0.1:{dead_port}")  # a dead default
        monkeypatch.setenv("PPATCH_HTTP_RETRIES", "0")
        result = ppatch(
            "install", "acme/toxicity@1.2.0", "--model", models.b, "--registry", spelling
        )
        assert result.code == 0, result.err
        [row] = json.loads(ppatch("list", "--model", models.b, "--json").out)["packages"]
        assert row["registry"] == registry.url  # one spelling is recorded
        code, rows = outdated(ppatch, models.b)
        assert code == 1 and rows["acme/toxicity"]["latest"] == "1.3.0"
        upgraded = ppatch("upgrade", "--model", models.b, "--dry-run", "--json")
        assert upgraded.code == 0, upgraded.err
        [action] = json.loads(upgraded.out)["packages"]
        assert (action["action"], action["version"]) == ("upgrade", "1.3.0")
        # --registry still overrides for both.
        dead = ppatch("upgrade", "--model", models.b, "--registry", os.environ["PPATCH_REGISTRY"])
        assert dead.code == 6


def test_outdated_flags_a_yanked_install_even_with_nothing_newer(
    ppatch: Any, registry: Registry, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package's only release: after the yank there is no update to offer, so only the
    # yank itself can make `outdated` ask for attention.
    registry.publish(
        build_patch("acme/lonely", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    )
    assert ppatch("install", "acme/lonely", "--model", models.a).code == 0
    assert outdated(ppatch, models.a)[0] == 0
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    assert ppatch("yank", "acme/lonely@1.0.0", "--reason", "unsafe").code == 0
    code, rows = outdated(ppatch, models.a)
    assert code == 1
    assert rows["acme/lonely"]["yanked"] is True
    assert rows["acme/lonely"]["update_available"] is False
    text = ppatch("outdated", "--model", models.a)
    assert text.code == 1
    assert "YANKED: unsafe" in text.out


def test_install_pre_is_honoured(ppatch: Any, registry: Registry, models: Models) -> None:
    for version in ("1.0.0", "1.1.0-rc.1"):
        registry.publish(
            build_patch("acme/preview", version, models.fingerprint_a, registry.keys["acme"])
        )
    plain = ppatch("install", "acme/preview", "--model", models.a, "--dry-run", "--json")
    assert plain.code == 0, plain.err
    assert [p["version"] for p in json.loads(plain.out)["packages"]] == ["1.0.0"]
    pre = ppatch("install", "acme/preview", "--pre", "--model", models.a)
    assert pre.code == 0, pre.err
    assert installed(ppatch, models.a) == [("acme/preview", "1.1.0-rc.1")]
