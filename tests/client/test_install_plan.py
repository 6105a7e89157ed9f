"""`ppatch.install_plan`: what install, upgrade and a lockfile install would do, with no server."""

from __future__ import annotations

import pytest

from patchfmt import PackageSpec
from ppatch.errors import UsageError
from ppatch.install_plan import (
    DowngradeRefusedError,
    InstallAction,
    YankLookup,
    YankState,
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


# Field by field, with hand-written expectations: these are what `--dry-run --json` prints
# and what an install records.


def test_classify_table() -> None:
    from ppatch.install_plan import classify

    current = InstalledPatch("acme/tox", "1.2.0", "a" * 64)
    table = [
        (None, "1.0.0", "b", "install"),
        (current, "9.0.0", "a", "unchanged"),  # the same file, whatever the version says
        (current, "1.2.1", "b", "upgrade"),
        (current, "1.10.0", "b", "upgrade"),  # compared as versions, not as text
        (current, "1.1.9", "b", "downgrade"),
        (current, "1.2.0-rc.1", "b", "downgrade"),  # a pre-release is below its release
        (current, "1.2.0", "b", "reinstall"),
    ]
    for installed_patch, version, digest, action in table:
        pin = _pin("acme/tox", version, digest)
        assert classify(pin, installed_patch) == action, (version, digest)


def test_unknown_yanks_knows_nothing() -> None:
    from ppatch.install_plan import YankState, unknown_yanks

    assert unknown_yanks("acme/tox", "1.2.0") == YankState(yanked=False, reason=None, known=False)


def test_as_json_of_an_install_field_by_field() -> None:
    pin = Pin("acme", "bias", "0.2.0", FINGERPRINT, "e" * 64, 321, "/blobs/sha256/" + "e" * 64, "b")
    action = InstallAction("acme/bias", "0.2.0", "upgrade", pin, "0.1.0", ("a note",))
    assert action.as_json() == {
        "name": "acme/bias",
        "version": "0.2.0",
        "previous_version": "0.1.0",
        "action": "upgrade",
        "sha256": "e" * 64,
        "size": 321,
        "url": "/blobs/sha256/" + "e" * 64,
        "yanked": False,
        "yanked_reason": None,
        "warnings": ["a note"],
    }


def test_as_json_of_a_yanked_pin_and_of_an_unchanged_yanked_install() -> None:
    from ppatch.install_plan import YankState

    pin = Pin("acme", "bias", "0.2.0", FINGERPRINT, "e" * 64, 1, "/u", "b", None, True, "leaks")
    planned = InstallAction("acme/bias", "0.2.0", "install", pin).as_json()
    assert (planned["yanked"], planned["yanked_reason"]) == (True, "leaks")
    kept = InstallAction(
        "acme/tox", "1.2.0", "unchanged", yank=YankState(yanked=True, reason="bad")
    ).as_json()
    assert kept == {
        "name": "acme/tox",
        "version": "1.2.0",
        "previous_version": None,
        "action": "unchanged",
        "sha256": None,
        "size": None,
        "url": None,
        "yanked": True,
        "yanked_reason": "bad",
        "warnings": [],
    }
    # A reason without the yank (a registry's leftover) is not reported.
    stale = InstallAction("acme/tox", "1.2.0", "unchanged", yank=YankState(reason="old"))
    assert stale.as_json()["yanked_reason"] is None
    assert stale.yanked_reason == "old"


def test_installed_entry_records_the_pin() -> None:
    pin = Pin("acme", "bias", "0.2.0", FINGERPRINT, "e" * 64, 321, "/blobs/x", "bias-0.2.0.ppatch")
    action = InstallAction("acme/bias", "0.2.0", "install", pin)
    assert action.installed_entry("http://r.test") == InstalledPatch(
        name="acme/bias",
        version="0.2.0",
        sha256="e" * 64,
        size=321,
        registry="http://r.test",
        url="/blobs/x",
        filename="bias-0.2.0.ppatch",
    )
    with pytest.raises(AssertionError):
        InstallAction("acme/bias", "0.2.0", "unchanged").installed_entry(None)


def test_downgrade_refusal_message_and_fields() -> None:
    pins = {"tox": _pin("acme/tox", "1.1.0", "b")}
    with pytest.raises(DowngradeRefusedError) as caught:
        plan_install(STATE, [PackageSpec.parse("acme/tox@1.1.0")], _resolver(pins, []))
    assert str(caught.value) == (
        "refusing to downgrade acme/tox from 1.2.0 to 1.1.0: the registry offered an older "
        "release than the one installed (an old index replayed?); pass --allow-downgrade to do "
        "it on purpose"
    )
    error = caught.value
    assert (error.name, error.installed, error.offered) == ("acme/tox", "1.2.0", "1.1.0")


@pytest.mark.parametrize(
    ("installed_set", "version", "digest", "previous"),
    [
        (InstalledSet(FINGERPRINT, None, []), "1.3.0", "b", None),  # nothing installed
        (STATE, "1.3.0", "b", "1.2.0"),  # an upgrade names what it replaces
        (STATE, "1.2.0", "b", None),  # a reinstall of the same version has no previous one
    ],
)
def test_install_previous_version(
    installed_set: InstalledSet, version: str, digest: str, previous: str | None
) -> None:
    pins = {"tox": _pin("acme/tox", version, digest)}
    (planned,) = plan_install(
        installed_set, [PackageSpec.parse("acme/tox")], _resolver(pins, []), upgrade=True
    )
    assert planned.previous == previous
    assert planned.pin == pins["tox"]
    assert (planned.name, planned.version) == ("acme/tox", version)


def _yanks(states: dict[tuple[str, str], YankState], asked: list[tuple[str, str]]) -> YankLookup:
    def lookup(name: str, version: str) -> YankState:
        asked.append((name, version))
        return states.get((name, version), YankState())

    return lookup


@pytest.mark.parametrize(
    ("reason", "shown"), [("broke refusals", "broke refusals"), (None, "no reason given")]
)
def test_an_installed_yanked_release_stays_with_a_warning(reason: str | None, shown: str) -> None:
    asked: list[tuple[str, str]] = []
    state = YankState(yanked=True, reason=reason)
    lookup = _yanks({("acme/tox", "1.2.0"): state}, asked)
    (planned,) = plan_install(
        STATE, [PackageSpec.parse("tox@1")], _resolver({}, []), yank_state=lookup
    )
    assert asked == [("acme/tox", "1.2.0")]
    assert (planned.name, planned.version, planned.action, planned.pin) == (
        "acme/tox",
        "1.2.0",
        "unchanged",
        None,
    )
    assert planned.warnings == (
        f"acme/tox 1.2.0 is yanked: {shown}; it stays installed ('ppatch upgrade acme/tox' "
        "moves off it)",
    )
    assert planned.yank == state
    assert (planned.yanked, planned.yanked_reason) == (True, reason)


def test_an_installed_release_that_is_not_yanked_stays_without_a_warning() -> None:
    (planned,) = plan_install(
        STATE, [PackageSpec.parse("tox@1")], _resolver({}, []), yank_state=_yanks({}, [])
    )
    assert planned.warnings == ()
    assert planned.yank == YankState()


def test_upgrade_plans_each_package_field_by_field() -> None:
    installed = [
        InstalledPatch("acme/tox", "1.2.0", "a" * 64),
        InstalledPatch("acme/bias", "0.1.0", "c" * 64),
        InstalledPatch("acme/harm", "2.0.0", "d" * 64),
    ]
    pins = {
        "tox": _pin("acme/tox", "1.2.0", "a"),  # already the newest
        "bias": _pin("acme/bias", "0.2.0", "e"),  # newer
        "harm": _pin("acme/harm", "1.9.0", "f"),  # older, but 2.0.0 is yanked
    }
    checked: list[str] = []

    def is_yanked(patch: InstalledPatch) -> bool:
        checked.append(patch.name)
        return patch.name == "acme/harm"

    actions = plan_upgrade(installed, _resolver(pins, []), is_yanked)
    assert [(a.name, a.version, a.action, a.previous, a.pin) for a in actions] == [
        ("acme/tox", "1.2.0", "unchanged", None, None),
        ("acme/bias", "0.2.0", "upgrade", "0.1.0", pins["bias"]),
        ("acme/harm", "1.9.0", "downgrade", "2.0.0", pins["harm"]),
    ]
    assert checked == ["acme/harm"]  # only asked when the offer is not newer and differs


def test_lock_pin_field_by_field() -> None:
    from ppatch.install_plan import lock_pin

    with_url = LockEntry("acme/tox", "1.2.0", "a" * 64, 99, "http://r.test", "/elsewhere/x")
    assert lock_pin(with_url, FINGERPRINT) == Pin(
        namespace="acme",
        name="tox",
        version="1.2.0",
        fingerprint=FINGERPRINT,
        sha256="a" * 64,
        size=99,
        url="/elsewhere/x",
        filename="tox-1.2.0.ppatch",
    )
    bare = lock_pin(LockEntry("acme/tox", "1.2.0", "a" * 64, None, None, None), FINGERPRINT)
    assert (bare.size, bare.url) == (0, "/blobs/sha256/" + "a" * 64)


def test_a_lockfile_plan_field_by_field() -> None:
    installed = InstalledSet(
        FINGERPRINT,
        None,
        [
            InstalledPatch("acme/tox", "1.2.0", "a" * 64),
            InstalledPatch("acme/bias", "0.3.0", "c" * 64),
            InstalledPatch("acme/harm", "1.0.0", "d" * 64),
        ],
    )
    entries = [
        LockEntry("acme/tox", "1.2.0", "a" * 64, 10, None, None),  # the same file
        LockEntry("acme/bias", "0.2.0", "e" * 64, 10, None, None),  # older
        LockEntry("acme/harm", "1.0.0", "f" * 64, 10, None, None),  # same version, other file
        LockEntry("acme/new", "3.0.0", "9" * 64, 10, None, None),  # not installed
        LockEntry("acme/up", "1.0.0", "8" * 64, 10, None, None),
    ]
    installed.patches.append(InstalledPatch("acme/up", "0.9.0", "7" * 64))
    asked: list[tuple[str, str]] = []
    actions = plan_lockfile(installed, entries, FINGERPRINT, _yanks({}, asked))
    assert asked == [(e.name, e.version) for e in entries]
    assert [(a.name, a.version, a.action, a.previous) for a in actions] == [
        ("acme/tox", "1.2.0", "unchanged", None),
        ("acme/bias", "0.2.0", "downgrade", "0.3.0"),
        ("acme/harm", "1.0.0", "reinstall", None),  # as for an install
        ("acme/new", "3.0.0", "install", None),
        ("acme/up", "1.0.0", "upgrade", "0.9.0"),
    ]
    assert actions[0].pin is None
    for action, entry in zip(actions[1:], entries[1:], strict=True):
        assert action.pin is not None
        assert (action.pin.full_name, action.pin.version, action.pin.sha256) == (
            entry.name,
            entry.version,
            entry.sha256,
        )
        assert action.pin.fingerprint == FINGERPRINT
        assert action.warnings == ()
    assert [a.name for a in changes(actions)] == [e.name for e in entries[1:]]


def test_a_lockfile_installs_or_keeps_a_yanked_release_with_a_warning() -> None:
    yanked = YankState(yanked=True, reason="leaks")
    lookup = _yanks({("acme/tox", "1.2.0"): yanked, ("acme/bias", "2.0.0"): yanked}, [])
    entries = [
        LockEntry("acme/tox", "1.2.0", "a" * 64, 10, None, None),
        LockEntry("acme/bias", "2.0.0", "c" * 64, 10, None, None),
    ]
    kept, installed_now = plan_lockfile(STATE, entries, FINGERPRINT, lookup)
    advice = "installed as the lockfile pins it"
    assert kept.warnings == (f"acme/tox 1.2.0 is yanked: leaks; {advice}",)
    assert (kept.action, kept.yank, kept.yanked, kept.yanked_reason) == (
        "unchanged",
        yanked,
        True,
        "leaks",
    )
    assert installed_now.warnings == (f"acme/bias 2.0.0 is yanked: leaks; {advice}",)
    assert installed_now.pin is not None
    assert (installed_now.pin.yanked, installed_now.pin.yanked_reason) == (True, "leaks")
    assert installed_now.as_json()["yanked_reason"] == "leaks"
