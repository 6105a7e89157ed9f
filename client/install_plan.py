"""Planning an install, an upgrade or a lockfile install: what each package would become.

Pure functions over the installed set. Talking to a registry is passed in as `resolve` (a spec
to a `Resolution`) and `is_yanked`, so a plan is testable with no server, and the CLI only
prints the plan that `ppatch.install` carries out (pip's resolver and uv's `lock`, beside their
CLIs). Every kind of plan is a list of `InstallAction`s, one per package, in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ppatch import installed, store
from ppatch.errors import VerificationError
from ppatch.resolver import Pin, Resolution

if TYPE_CHECKING:
    from patchfmt import PackageSpec
    from ppatch.lockfile import LockEntry

__all__ = [
    "DowngradeRefusedError",
    "InstallAction",
    "YankLookup",
    "YankState",
    "changes",
    "classify",
    "lock_pin",
    "plan_install",
    "plan_lockfile",
    "plan_upgrade",
    "unknown_yanks",
]


@dataclass(frozen=True)
class YankState:
    """Whether one release is yanked, and why; `known` is False when nobody could say (the
    registry was unreachable and its index not cached), which is never reported as "not
    yanked" to the user, only left without a warning."""

    yanked: bool = False
    reason: str | None = None
    known: bool = True


# (package name `ns/name`, exact version) -> its yank state, from the registry's index.
YankLookup = Callable[[str, str], YankState]


def unknown_yanks(_name: str, _version: str) -> YankState:
    """The lookup for when no registry is asked: nothing is known, nothing is warned."""
    return YankState(known=False)


def _yank_warning(name: str, version: str, state: YankState, *, advice: str) -> tuple[str, ...]:
    if not state.yanked:
        return ()
    return (f"{name} {version} is yanked: {state.reason or 'no reason given'}; {advice}",)


@dataclass(frozen=True)
class InstallAction:
    """What an install does, or would do, for one package.

    `action` is "install", "upgrade", "downgrade", "reinstall" or "unchanged"; `pin` is None
    only for "unchanged" when the installed version already satisfied the request.
    """

    name: str
    version: str
    action: str
    pin: Pin | None = None
    previous: str | None = None
    warnings: tuple[str, ...] = ()
    # The installed release's yank state for "unchanged" actions (a new pin carries its own).
    yank: YankState = YankState()

    @property
    def yanked(self) -> bool:
        return self.pin.yanked if self.pin is not None else self.yank.yanked

    @property
    def yanked_reason(self) -> str | None:
        return self.pin.yanked_reason if self.pin is not None else self.yank.reason

    @property
    def changes(self) -> bool:
        """True when carrying the action out downloads or records something."""
        return self.pin is not None and self.action != "unchanged"

    def as_json(self) -> dict[str, Any]:
        pin = self.pin
        return {
            "name": self.name,
            "version": self.version,
            "previous_version": self.previous,
            "action": self.action,
            "sha256": pin.sha256 if pin else None,
            "size": pin.size if pin else None,
            "url": pin.url if pin else None,
            "yanked": self.yanked,
            "yanked_reason": self.yanked_reason if self.yanked else None,
            "warnings": list(self.warnings),
        }

    def installed_entry(self, registry: str | None) -> store.InstalledPatch:
        assert self.pin is not None
        return store.InstalledPatch(
            name=self.pin.full_name,
            version=self.pin.version,
            sha256=self.pin.sha256,
            size=self.pin.size,
            registry=registry,
            url=self.pin.url,
            filename=self.pin.filename,
        )


def classify(pin: Pin, current: store.InstalledPatch | None) -> str:
    """The action that replaces `current` (None: nothing installed) with `pin`."""
    from patchfmt import parse_version

    if current is None:
        return "install"
    if current.sha256 == pin.sha256:
        return "unchanged"
    before, after = parse_version(current.version), parse_version(pin.version)
    if after > before:
        return "upgrade"
    return "downgrade" if after < before else "reinstall"


class DowngradeRefusedError(VerificationError):
    """An install would move a package to a lower version without being told to."""

    def __init__(self, name: str, installed: str, offered: str) -> None:
        super().__init__(
            f"refusing to downgrade {name} from {installed} to {offered}: the registry offered "
            "an older release than the one installed (an old index replayed?); pass "
            "--allow-downgrade to do it on purpose"
        )
        self.name = name
        self.installed = installed
        self.offered = offered


def changes(actions: Sequence[InstallAction]) -> list[InstallAction]:
    """The actions that download or record something."""
    return [action for action in actions if action.changes]


def _replacing(pin: Pin, current: store.InstalledPatch | None, **extra: Any) -> InstallAction:
    return InstallAction(
        name=pin.full_name,
        version=pin.version,
        action=classify(pin, current),
        pin=pin,
        previous=current.version if current and current.version != pin.version else None,
        **extra,
    )


def plan_install(
    state: store.InstalledSet,
    specs: Sequence[PackageSpec],
    resolve: Callable[[PackageSpec], Resolution],
    *,
    upgrade: bool = False,
    allow_downgrade: bool = False,
    yank_state: YankLookup = unknown_yanks,
) -> list[InstallAction]:
    """`ppatch install SPEC...`: a package already installed in the spec's range stays
    (pip's no-op) unless `upgrade`; every other spec is resolved. Moving a package to a lower
    version raises `DowngradeRefusedError` unless `allow_downgrade`: a registry replaying an
    old index must not roll a model back. An installed release that stays although it is
    yanked stays with a warning naming the reason (PEP 592: a yanked release is kept or
    installed when asked for, never silently)."""
    actions: list[InstallAction] = []
    for spec in specs:
        current = installed.find_installed(state, spec.full_name or spec.name)
        if current is not None and not upgrade and installed.satisfies(current, spec):
            yank = yank_state(current.name, current.version)
            advice = f"it stays installed ('ppatch upgrade {current.name}' moves off it)"
            warnings = _yank_warning(current.name, current.version, yank, advice=advice)
            actions.append(
                InstallAction(
                    current.name, current.version, "unchanged", warnings=warnings, yank=yank
                )
            )
            continue
        resolution = resolve(spec)
        action = _replacing(resolution.pin, current, warnings=resolution.warnings)
        if action.action == "downgrade" and not allow_downgrade:
            assert current is not None
            raise DowngradeRefusedError(action.name, current.version, action.version)
        actions.append(action)
    return actions


def plan_upgrade(
    chosen: Sequence[store.InstalledPatch],
    resolve: Callable[[PackageSpec], Resolution],
    is_yanked: Callable[[store.InstalledPatch], bool],
) -> list[InstallAction]:
    """`ppatch upgrade`: each installed package moves to the newest release for the model,
    or away from a yanked version; otherwise it stays."""
    from patchfmt import PackageSpec, parse_version

    actions: list[InstallAction] = []
    for current in chosen:
        pin = resolve(PackageSpec.parse(current.name)).pin
        newer = parse_version(pin.version) > parse_version(current.version)
        if not newer and not (pin.version != current.version and is_yanked(current)):
            actions.append(InstallAction(current.name, current.version, "unchanged"))
            continue
        actions.append(
            InstallAction(
                pin.full_name,
                pin.version,
                classify(pin, current),
                pin=pin,
                previous=current.version,
            )
        )
    return actions


def lock_pin(entry: LockEntry, fingerprint: str) -> Pin:
    """The artifact a lockfile entry names (its URL defaults to the registry's blob path)."""
    from patchfmt.blob_paths import blob_url

    namespace, name = entry.name.split("/", 1)
    return Pin(
        namespace=namespace,
        name=name,
        version=entry.version,
        fingerprint=fingerprint,
        sha256=entry.sha256,
        size=entry.size or 0,
        url=entry.url or blob_url(entry.sha256),
        filename=f"{name}-{entry.version}.ppatch",
    )


def plan_lockfile(
    state: store.InstalledSet,
    entries: Sequence[LockEntry],
    fingerprint: str,
    yank_state: YankLookup = unknown_yanks,
) -> list[InstallAction]:
    """`ppatch install -r LOCKFILE`: every entry whose exact file is not installed changes.
    A lockfile pins exact versions, so a yanked one is installed (or kept) with a warning."""
    from dataclasses import replace

    actions: list[InstallAction] = []
    for entry in entries:
        yank = yank_state(entry.name, entry.version)
        warnings = _yank_warning(
            entry.name, entry.version, yank, advice="installed as the lockfile pins it"
        )
        current = state.find(entry.name)
        if current is not None and current.sha256 == entry.sha256:
            actions.append(
                InstallAction(entry.name, entry.version, "unchanged", warnings=warnings, yank=yank)
            )
            continue
        pin = replace(lock_pin(entry, fingerprint), yanked=yank.yanked, yanked_reason=yank.reason)
        # As for `plan_install`: a reinstall of the same version names no previous one.
        actions.append(_replacing(pin, current, warnings=warnings))
    return actions
