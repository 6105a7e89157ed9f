"""What the server can run, built from a model's installed set: the `model` ids it answers to.

A `Snapshot` is immutable and complete: the loaded model with every served patch set and their
prefix caches already computed. The server swaps one snapshot for the next with a single
reference assignment, so a request that took a snapshot keeps a whole, consistent set for as
long as it runs, and never sees half of a change.

Ids: `BASE` runs the installed patches in application order (the default), `BASE:bare` the model
without patches, and `BASE:NS/NAME` one installed patch alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ppatch import store
from ppatch.runtime.loading import applied_from_patch_file
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel
from ppatch.runtime.prefix import PrefixStore
from ppatch.serve.errors import UnknownModelError
from ppatch.store import InstalledSet

__all__ = ["BARE_SUFFIX", "ServedSet", "Snapshot", "build_snapshot", "installed_key"]

BARE_SUFFIX = ":bare"
InstalledKey = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, eq=False)
class ServedSet:
    """One `model` id: the model run with one patch set."""

    model_id: str
    patched: PatchedModel
    description: str

    @property
    def header(self) -> str:
        """The `ppatch-patches` header: `ns/name@version` in application order, comma-separated."""
        return ",".join(f"{patch.name}@{patch.version}" for patch in self.patched.patches)


@dataclass(frozen=True, eq=False)
class Snapshot:
    generation: int
    default_id: str
    sets: Mapping[str, ServedSet]
    installed: InstalledKey

    def lookup(self, model_id: str) -> ServedSet:
        served = self.sets.get(model_id)
        if served is None:
            raise UnknownModelError(model_id, list(self.sets))
        return served

    @property
    def default(self) -> ServedSet:
        return self.sets[self.default_id]


def installed_key(state: InstalledSet) -> InstalledKey:
    """What identifies an installed set's content: each patch's name, version and digest."""
    return tuple((patch.name, patch.version, patch.sha256) for patch in state.patches)


def build_snapshot(
    model: Any,
    tokenizer: Any,
    *,
    base_id: str,
    state: InstalledSet,
    generation: int,
) -> Snapshot:
    """Read and check every installed patch, build the served sets and compute their prefixes.

    Raises before anything is returned if any patch is missing, damaged, or made for another
    model, so a bad installed set never replaces a good snapshot.
    """
    applied = [_verified(name, version, sha256, state.fingerprint) for name, version, sha256 in
               installed_key(state)]  # fmt: skip
    # A store per snapshot: the prefixes of a replaced set are freed with it.
    prefixes = PrefixStore()

    def served(model_id: str, patches: list[AppliedPatch], description: str) -> ServedSet:
        patched = PatchedModel(model, patches, tokenizer=tokenizer, prefix_store=prefixes)
        if patches:
            patched.prefix()  # computed now, not by the first request after a swap
        return ServedSet(model_id, patched, description)

    sets = {base_id: served(base_id, applied, "the installed patches, in application order")}
    sets[base_id + BARE_SUFFIX] = served(base_id + BARE_SUFFIX, [], "the model without patches")
    for patch in applied:
        model_id = f"{base_id}:{patch.name}"
        sets[model_id] = served(model_id, [patch], f"{patch.name}@{patch.version} alone")
    return Snapshot(generation, base_id, sets, installed_key(state))


def _verified(name: str, version: str, sha256: str, fingerprint: str) -> AppliedPatch:
    from ppatch.install import verify_blob

    path = store.installed_blob(store.InstalledPatch(name, version, sha256))
    return applied_from_patch_file(verify_blob(path, sha256, fingerprint), source=str(path))
