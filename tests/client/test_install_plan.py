"""`ppatch.install_plan`: what install, upgrade and a lockfile install would do, with no server."""

from __future__ import annotations

import pytest

from patchfmt import PackageSpec
from ppatch.errors import UsageError
from ppatch.install_plan import (
    DowngradeRefusedError,
    changes,
    plan_install,
    plan_lockfile,
    plan_upgrade,
)
from ppatch.lockfile import LockEntry
from ppatch.resolver import Pin, Resolution
from ppatch.store import InstalledPatch, InstalledSet

FINGERPRINT = "sha256:" + "cd" * 32


def _pin(name: str, version: str, digest: str) -> Pin:
    namespace, short = name.split("/")
    return Pin(namespace, short, version, FINGERPRINT, digest * 64, 10, "/u", "f.ppatch")


def _resolver(pins: dict[str, Pin], asked: list[str]):
    def resolve(spec: PackageSpec) -> Resolution:
        asked.append(str(spec))
        return Resolution(pins[spec.name], warnings=(f"note on {spec.name}",))

    return resolve


STATE = InstalledSet(FINGERPRINT, None, [InstalledPatch("acme/tox", "1.2.0", "a" * 64)])


def test_install_keeps_a_satisfying_version_and_resolves_the_rest() -> None:
    asked: list[str] = []
    pins = {"tox": _pin("acme/tox", "1.3.0", "b"), "bias": _pin("acme/bias", "0.1.0", "c")}
    specs = [PackageSpec.parse(text) for text in ("tox@^1", "bias")]
    actions = plan_install(STATE, specs, _resolver(pins, asked))
    assert [(a.name, a.version, a.action, a.previous) for a in actions] == [
        ("acme/tox", "1.2.0", "unchanged", None),
        ("acme/bias", "0.1.0", "install", None),
    ]
    assert asked == ["bias"]
    assert actions[1].warnings == ("note on bias",)
    assert [a.name for a in changes(actions)] == ["acme/bias"]


@pytest.mark.parametrize(
    ("version", "digest", "action"),
    [("1.3.0", "b", "upgrade"), ("1.1.0", "b", "downgrade"), ("1.2.0", "b", "reinstall")],
)
def test_install_upgrade_flag_resolves_and_classifies(version, digest, action) -> None:
    pins = {"tox": _pin("acme/tox", version, digest)}
    resolver = _resolver(pins, [])
    specs = [PackageSpec.parse("tox")]
    (planned,) = plan_install(STATE, specs, resolver, upgrade=True, allow_downgrade=True)
    assert planned.action == action


def test_install_refuses_a_downgrade_unless_allowed() -> None:
    pins = {"tox": _pin("acme/tox", "1.1.0", "b")}
    with pytest.raises(DowngradeRefusedError, match=r"from 1\.2\.0 to 1\.1\.0"):
        plan_install(STATE, [PackageSpec.parse("tox")], _resolver(pins, []), upgrade=True)


def test_install_refuses_an_ambiguous_bare_name() -> None:
    state = InstalledSet(
        FINGERPRINT,
        None,
        [InstalledPatch("acme/tox", "1.0.0", "a" * 64), InstalledPatch("x/tox", "1.0.0", "b" * 64)],
    )
    with pytest.raises(UsageError, match="matches several"):
        plan_install(state, [PackageSpec.parse("tox")], _resolver({}, []))


@pytest.mark.parametrize(
    ("latest", "yanked", "expected"),
    [("1.3.0", False, "upgrade"), ("1.2.0", True, "unchanged"), ("1.1.0", True, "downgrade")],
)
def test_upgrade_moves_to_newer_or_away_from_a_yanked_version(latest, yanked, expected) -> None:
    pins = {"tox": _pin("acme/tox", latest, "b")}
    (planned,) = plan_upgrade(STATE.patches, _resolver(pins, []), lambda _patch: yanked)
    assert planned.action == expected


def test_a_lockfile_plan_changes_only_entries_whose_file_differs() -> None:
    entries = [
        LockEntry("acme/tox", "1.2.0", "a" * 64, 10, None, None),
        LockEntry("acme/bias", "2.0.0", "c" * 64, 10, None, None),
    ]
    actions = plan_lockfile(STATE, entries, FINGERPRINT)
    assert [(a.name, a.action) for a in actions] == [
        ("acme/tox", "unchanged"),
        ("acme/bias", "install"),
    ]
    assert actions[1].pin is not None
    assert actions[1].pin.url == "/blobs/sha256/" + "c" * 64
