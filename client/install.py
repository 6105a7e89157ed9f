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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppatch import constants, store
from ppatch.errors import NotFoundError, UsageError, VerificationError
from ppatch.progress import deferred_progress, progress
from ppatch.registry.errors import RegistryNotFoundError
from ppatch.resolver import Pin, Resolution, resolve
from ppatch.trust import ensure_trusted, public_keys

if TYPE_CHECKING:
    from patchfmt import PackageSpec
    from ppatch.registry.client import RegistryClient

__all__ = [
    "InstallAction",
    "ModelTarget",
    "Pin",
    "fetch_verified",
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
            "yanked": pin.yanked if pin else False,
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


def model_target(model: str) -> ModelTarget:
    """Find MODEL (a directory or a cached repo id) and its fingerprint (cached by patchfmt)."""
    from patchfmt import fingerprint_model, resolve_model_path

    path = resolve_model_path(model)
    # Deferred: a cached fingerprint never advances the bar, so rich is not even imported.
    with deferred_progress(f"fingerprinting {path.name}", None, unit="bytes") as advance:
        fingerprint = fingerprint_model(
            path, cache_dir=constants.fingerprint_cache_dir(), progress=advance
        )
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
    client: RegistryClient, spec: PackageSpec, fingerprint: str, *, allow_prerelease: bool = False
) -> Resolution:
    """Fetch the indexes a spec needs and resolve it (see `ppatch.resolver.resolve`)."""
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


def fetch_verified(client: RegistryClient | None, pin: Pin, fingerprint: str) -> Path:
    """The verified blob of `pin` in the store, downloading it when it is not there yet."""
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
            digest = client.download(pin.url, handle, on_bytes=advance)
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
        pinned = ensure_trusted(client, pin.namespace, patch.signature.key_id)
        verify_patch(patch, public_keys(pinned))
        check_fingerprint(patch.manifest, fingerprint)
        return store.store_blob(temporary, pin.sha256)


def classify(pin: Pin, installed: store.InstalledPatch | None) -> str:
    from patchfmt import parse_version

    if installed is None:
        return "install"
    if installed.sha256 == pin.sha256:
        return "unchanged"
    before, after = parse_version(installed.version), parse_version(pin.version)
    if after > before:
        return "upgrade"
    return "downgrade" if after < before else "reinstall"


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


def warn(messages: Sequence[str]) -> None:
    for message in messages:
        print(f"ppatch: warning: {message}", file=sys.stderr)
