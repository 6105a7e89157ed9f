"""Install, upgrade and remove patches: resolve, download, verify, then record (pip's stages).

Each stage is its own function. Resolution is `ppatch.resolver.resolve` over indexes fetched
here; a download streams into a unique temporary file while hashing, and the file enters the
blob store only after every check passed: sha256 and size against the index, the format checks
of `patchfmt.read_patch`, the signature against the namespace's pinned keys, the manifest's name
and version against the pin, and the manifest's base fingerprint against the target model's.
Only then, under the model's lock, is the installed set rewritten (atomically).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppatch import config, store, verbosity
from ppatch.errors import NotFoundError, UsageError, VerificationError
from ppatch.install_plan import (
    InstallAction,
    YankLookup,
    changes,
    plan_lockfile,
    unknown_yanks,
)
from ppatch.progress import deferred_progress, progress
from ppatch.registry.errors import RegistryNotFoundError
from ppatch.resolver import Pin, Resolution, resolve
from ppatch.trust import ensure_trusted, public_keys

if TYPE_CHECKING:
    from patchfmt import PackageSpec
    from ppatch.lockfile import Lockfile
    from ppatch.registry.client import RegistryClient
    from ppatch.registry.signed_index import SignedIndex

__all__ = [
    "ModelTarget",
    "Pin",
    "carry_out",
    "fetch_verified",
    "install_locked",
    "is_yanked",
    "model_target",
    "record",
    "resolve_spec",
    "verify_blob",
]


# How many package names a failed lookup fetches to find close matches among.
SUGGESTION_POOL = 200


@dataclass(frozen=True)
class ModelTarget:
    """The model a command acts on: where it is, and its base fingerprint."""

    path: Path
    fingerprint: str


def model_target(model: str) -> ModelTarget:
    """Find MODEL (a directory or a cached repo id) and its fingerprint (cached by patchfmt)."""
    from patchfmt import resolve_model_path
    from ppatch.fingerprints import model_fingerprint

    path = resolve_model_path(model)
    # Deferred: a cached fingerprint never advances the bar, so rich is not even imported.
    with deferred_progress(f"fingerprinting {path.name}", None, unit="bytes") as advance:
        fingerprint = model_fingerprint(path, progress=advance)
    verbosity.detail(f"model {path} has fingerprint {fingerprint}")
    return ModelTarget(path=path, fingerprint=fingerprint)


def parse_spec(text: str) -> PackageSpec:
    """`[namespace/]name[@range]`; a malformed spec is a usage error (exit 2)."""
    from patchfmt import PackageSpec

    try:
        return PackageSpec.parse(text)
    except ValueError as error:
        raise UsageError(str(error)) from error


def _known_names(client: RegistryClient, name: str) -> list[str]:
    """Package names for 'did you mean' suggestions: those matching the text, then any."""
    results = client.search(name) or client.search(limit=SUGGESTION_POOL)
    return [f"{item['namespace']}/{item['name']}" for item in results if "namespace" in item]


def resolve_spec(
    client: RegistryClient,
    spec: PackageSpec,
    fingerprint: str,
    *,
    allow_prerelease: bool = False,
    signed: SignedIndex | None = None,
) -> Resolution:
    """Fetch the indexes a spec needs and resolve it (see `ppatch.resolver.resolve`).

    With the registry's `signed` index, the same spec is resolved again over the signed
    targets, and the answer is refused unless both lead to the same artifact (same version,
    fingerprint, sha256 and length); the yank state and its warning are the signed ones."""
    resolution = _resolve_unsigned(client, spec, fingerprint, allow_prerelease=allow_prerelease)
    if signed is None:
        return resolution
    return _confirmed(resolution, spec, fingerprint, signed, allow_prerelease=allow_prerelease)


def _confirmed(
    resolution: Resolution,
    spec: PackageSpec,
    fingerprint: str,
    signed: SignedIndex,
    *,
    allow_prerelease: bool,
) -> Resolution:
    from ppatch.signed_check import mismatch

    pin = resolution.pin
    signed_index = signed.package_index(pin.namespace, pin.name)
    try:
        signed_resolution: Resolution | None = resolve(
            spec, {pin.full_name: signed_index}, fingerprint, allow_prerelease=allow_prerelease
        )
    except (NotFoundError, UsageError):
        signed_resolution = None
    problem = mismatch(
        pin, signed_resolution.pin if signed_resolution else None, signed_index, signed.base_url
    )
    if problem is not None:
        raise VerificationError(problem)
    assert signed_resolution is not None
    confirmed = replace(
        pin,
        yanked=signed_resolution.pin.yanked,
        yanked_reason=signed_resolution.pin.yanked_reason,
        key_id=signed_resolution.pin.key_id,
    )
    return Resolution(confirmed, signed_resolution.warnings)


def _resolve_unsigned(
    client: RegistryClient, spec: PackageSpec, fingerprint: str, *, allow_prerelease: bool
) -> Resolution:
    indexes: dict[str, Any] = {}
    if spec.namespace:
        with contextlib.suppress(RegistryNotFoundError):
            indexes[f"{spec.namespace}/{spec.name}"] = client.get_index(spec.namespace, spec.name)
    else:
        for item in client.search(name=spec.name):
            if item.get("name") != spec.name:
                continue
            try:
                indexes[f"{item['namespace']}/{spec.name}"] = client.get_index(
                    str(item["namespace"]), spec.name
                )
            except RegistryNotFoundError:
                continue
    known = [] if indexes else _known_names(client, spec.name)
    return resolve(spec, indexes, fingerprint, allow_prerelease=allow_prerelease, known_names=known)


def is_yanked(
    client: RegistryClient, patch: store.InstalledPatch, signed: SignedIndex | None = None
) -> bool:
    """Whether the registry now marks the installed version of `patch` as yanked: as its
    `signed` index says when given, not its unsigned package index."""
    namespace, name = patch.name.split("/", 1)
    index = signed.package_index(namespace, name) if signed else client.get_index(namespace, name)
    for release in index.get("releases", []):
        if release.get("version") == patch.version:
            return bool(release.get("yanked"))
    return False


def verify_blob(path: Path, expected_sha256: str, fingerprint: str) -> Any:
    """Check a stored file again: digest, format, and that it fits the model. Its PatchFile."""
    from patchfmt import check_fingerprint, read_patch

    actual = store.file_sha256(path)
    if not hmac.compare_digest(actual, expected_sha256):
        raise VerificationError(
            f"{str(path)!r} has sha256 {actual}, expected {expected_sha256}; the file was changed"
        )
    patch = read_patch(path)
    check_fingerprint(patch.manifest, fingerprint)
    return patch


def _check_identity(patch: Any, pin: Pin) -> None:
    manifest = patch.manifest
    if manifest.name != pin.full_name or str(manifest.version) != pin.version:
        raise VerificationError(
            f"downloaded file is {manifest.name} {manifest.version}, but the index "
            f"promised {pin.full_name} {pin.version}"
        )


def fetch_verified(
    client: RegistryClient | None,
    pin: Pin,
    fingerprint: str,
    signed: SignedIndex | None = None,
) -> Path:
    """The verified blob of `pin` in the store, downloading it when it is not there yet; the
    namespace's keys come from the registry's `signed` index when given."""
    if store.has_blob(pin.sha256):
        path = store.blob_path(pin.sha256)
        try:
            _check_identity(verify_blob(path, pin.sha256, fingerprint), pin)
            return path
        except VerificationError:
            if client is None:
                raise
            # A damaged cache entry is replaced by a fresh, verified download.
            path.unlink(missing_ok=True)
    if client is None:
        raise NotFoundError(
            f"{pin.full_name} {pin.version} (sha256 {pin.sha256}) is not in the local cache "
            "and no registry is available"
        )
    from patchfmt import check_fingerprint, read_patch, verify_patch

    with store.temporary_download() as (temporary, handle):
        with progress(f"{pin.full_name} {pin.version}", pin.size, unit="bytes") as advance:
            # The index's length bounds the read: an endless answer stops there.
            digest = client.download(pin.url, handle, on_bytes=advance, max_bytes=pin.size)
        handle.flush()
        size = handle.tell()
        if not hmac.compare_digest(digest, pin.sha256) or size != pin.size:
            raise VerificationError(
                f"download of {pin.full_name} {pin.version} does not match the index: sha256 "
                f"{digest} ({size} bytes), expected {pin.sha256} ({pin.size} bytes)"
            )
        patch = read_patch(temporary)
        _check_identity(patch, pin)
        if patch.signature is None:
            raise VerificationError(f"{pin.full_name} {pin.version} is not signed")
        pinned = ensure_trusted(client, pin.namespace, patch.signature.key_id, signed)
        verify_patch(patch, public_keys(pinned))
        check_fingerprint(patch.manifest, fingerprint)
        return store.store_blob(temporary, pin.sha256)


def _cached_blob_verifies(pin: Pin, fingerprint: str) -> bool:
    """Whether the store's blob for `pin` passes every check a fresh download would."""
    try:
        fetch_verified(None, pin, fingerprint)
    except VerificationError:
        return False
    return True


def record(
    target: ModelTarget,
    entries: Sequence[store.InstalledPatch],
    *,
    before_write: Callable[[store.InstalledSet], None] = lambda _state: None,
) -> store.InstalledSet:
    """Add or replace `entries` in the model's installed set, under its lock, atomically."""
    with store.model_lock(target.fingerprint):
        state = store.read_installed(target.fingerprint)
        state.model = str(target.path)
        for entry in entries:
            state.put(entry)
        before_write(state)
        store.write_installed(state)
        return state


def carry_out(
    client: RegistryClient | None,
    target: ModelTarget,
    actions: Sequence[InstallAction],
    registry: str | None,
    signed: SignedIndex | None = None,
) -> None:
    """Download and verify everything first; record the lot only when all of it passed."""
    changing = changes(actions)
    for action in changing:
        assert action.pin is not None
        fetch_verified(client, action.pin, target.fingerprint, signed)
    if changing:
        record(target, [action.installed_entry(registry) for action in changing])


def _check_signed(pin: Pin, signed: SignedIndex) -> None:
    """Refuse a lockfile's artifact that the registry's signed index does not have as is."""
    info = signed.artifact(pin.namespace, pin.name, pin.version, pin.fingerprint)
    if (info.sha256, info.length) != (pin.sha256, pin.size):
        raise VerificationError(
            f"lockfile entry {pin.full_name} {pin.version} has sha256 {pin.sha256} ({pin.size} "
            f"bytes) but the signed index of {signed.base_url} has sha256 {info.sha256} "
            f"({info.length} bytes)"
        )


def install_locked(
    target: ModelTarget,
    locked: Lockfile,
    *,
    source: str,
    registry: str | None = None,
    dry_run: bool = False,
    yank_state: YankLookup | None = None,
) -> list[InstallAction]:
    """Install the exact files of a lockfile: each from the blob cache when its sha256 is
    there, else downloaded from `registry` (or the entry's own) and verified. Nothing is
    recorded unless every file passed. Returns the plan, carried out unless `dry_run`."""
    from ppatch.registry.client import RegistryClient
    from ppatch.registry.signed_index import refreshed_signed_index

    if locked.fingerprint != target.fingerprint:
        raise VerificationError(
            f"lockfile {source!r} was frozen for model {locked.fingerprint}, but "
            f"{str(target.path)!r} has fingerprint {target.fingerprint}"
        )
    state = store.read_installed(target.fingerprint)
    actions = plan_lockfile(state, locked.entries, target.fingerprint, yank_state or unknown_yanks)
    entries = {entry.name: entry for entry in locked.entries}
    clients: dict[str, RegistryClient] = {}
    signed_indexes: dict[str, SignedIndex | None] = {}
    try:
        for action in changes(actions):
            assert action.pin is not None
            entry = entries[action.name]
            # A damaged cache entry is downloaded again and verified below, as any install
            # replaces one; the lockfile's digest still decides what is accepted.
            if store.has_blob(entry.sha256) and (
                dry_run or _cached_blob_verifies(action.pin, target.fingerprint)
            ):
                continue
            url = config.resolve_registry(registry or entry.registry)
            if url not in clients:
                clients[url] = RegistryClient(url)
                signed_indexes[url] = refreshed_signed_index(clients[url].base_url)
            source_client, signed = clients[url], signed_indexes[url]
            if entry.size is None:
                raise UsageError(
                    f"lockfile entry {entry.name} has no size; cannot verify a download"
                )
            if signed is not None:
                _check_signed(action.pin, signed)
            if not dry_run:
                fetch_verified(source_client, action.pin, target.fingerprint, signed)
    finally:
        for client in clients.values():
            client.close()
    if not dry_run and changes(actions):
        record(target, [entries[action.name].as_installed() for action in changes(actions)])
    return actions
