"""`--auto-upgrade N`: every N seconds, upgrade the installed set the way `ppatch upgrade` does.

Each installed patch moves to the newest release the registry offers for the model, and off a
yanked version even to an older release; a yanked version with no release left to move to is
removed, so the server stops applying a fix its vendor withdrew. Every download is verified
(`ppatch.install.fetch_verified`) before anything is recorded, and the installed set is
rewritten once, under the model's lock, only after all of it passed: a failed upgrade changes
nothing and the running set keeps serving. The watcher then swaps the new set in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ppatch import config, install, install_plan, store
from ppatch.errors import NotFoundError

if TYPE_CHECKING:
    from ppatch.registry.client import RegistryClient
    from ppatch.registry.signed_index import SignedIndex

__all__ = ["AutoUpgrader", "UpgradePlan", "plan_upgrade", "upgrade_installed"]

log = logging.getLogger("ppatch.serve")


@dataclass
class UpgradePlan:
    """What one check decided: new pins to record and yanked packages to remove."""

    replace: list[store.InstalledPatch] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.replace or self.remove)


def plan_upgrade(target: install.ModelTarget, registry: str | None) -> UpgradePlan:
    """`ppatch upgrade`'s plan for every installed patch, with what it needs downloaded and
    verified; a yanked patch with no release left to move to is planned for removal."""
    from ppatch.registry.client import RegistryClient
    from ppatch.registry.signed_index import refreshed_signed_index

    plan = UpgradePlan()
    signed_indexes: dict[str, SignedIndex | None] = {}
    for current in store.read_installed(target.fingerprint).patches:
        url = config.resolve_registry(registry or current.registry)
        with RegistryClient(url) as client:
            if url not in signed_indexes:  # checked as `ppatch upgrade` checks it
                signed_indexes[url] = refreshed_signed_index(client.base_url)
            _plan_one(client, current, target.fingerprint, plan, signed_indexes[url])
    return plan


def _plan_one(
    client: RegistryClient,
    current: store.InstalledPatch,
    fingerprint: str,
    plan: UpgradePlan,
    signed: SignedIndex | None = None,
) -> None:
    yanked = install.is_yanked(client, current, signed)
    try:
        actions = install_plan.plan_upgrade(
            [current],
            lambda spec: install.resolve_spec(client, spec, fingerprint, signed=signed),
            lambda _patch: yanked,
        )
    except NotFoundError:
        if yanked:  # withdrawn, and nothing to move to: stop applying it
            plan.remove.append(current.name)
            plan.changes.append(f"removed {current.name} {current.version} (yanked)")
        return
    for action in install_plan.changes(actions):
        assert action.pin is not None
        install.fetch_verified(client, action.pin, fingerprint, signed)
        plan.replace.append(action.installed_entry(client.base_url))
        why = " (yanked)" if yanked else ""
        plan.changes.append(f"{current.name} {current.version}{why} -> {action.version}")


def upgrade_installed(target: install.ModelTarget, registry: str | None = None) -> list[str]:
    """Run one check and record its result; the changes made, in words (empty: none)."""
    plan = plan_upgrade(target, registry)
    if not plan:
        return []

    def drop_removed(state: store.InstalledSet) -> None:
        for name in plan.remove:
            if state.find(name) is not None:
                state.remove(name)

    install.record(target, plan.replace, before_write=drop_removed)
    return plan.changes


class AutoUpgrader:
    """Runs `upgrade_installed` every `interval` seconds on a thread of its own."""

    def __init__(
        self,
        target: install.ModelTarget,
        interval: float,
        *,
        registry: str | None = None,
        on_result: Callable[[str], None] = lambda outcome: None,
        after_change: Callable[[], object] = lambda: None,
    ) -> None:
        self.target, self.interval, self.registry = target, interval, registry
        self._on_result, self._after_change = on_result, after_change
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def check_once(self) -> list[str]:
        """One check; failures are logged and counted, never raised (the set keeps serving)."""
        try:
            changes = upgrade_installed(self.target, self.registry)
        except Exception as error:
            self.last_error = " ".join(str(error).split()) or type(error).__name__
            log.error("auto-upgrade failed, the running set keeps serving: %s", self.last_error)
            self._on_result("failed")
            return []
        self.last_error = None
        for change in changes:
            log.info("auto-upgrade: %s", change)
        self._on_result("changed" if changes else "unchanged")
        if changes:
            self._after_change()
        return changes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ppatch-serve-upgrade", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check_once()
