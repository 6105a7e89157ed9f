"""Which public keys may sign a namespace's patches: trust on first use, then pinned.

The first time a namespace of a registry is used, its active keys (from
`GET /api/v1/namespaces/{ns}/keys`) are pinned in `known_keys.toml`, as SSH pins a host key in
`known_hosts`. Afterwards a patch signed by any other key is refused with `KeyChangedError`,
which says how to accept the change on purpose (`ppatch trust NS`). `ppatch trust NS
--public-key PUB` pins a key given out of band instead of the registry's.

Every download reads the namespace's keys again for revocations. A key once seen revoked is
remembered (`[revoked]` in the same file) and refused from then on, pinned or not, so a
replayed older answer cannot bring it back. An answer for another namespace than the one asked
for is refused.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from patchfmt.atomic import atomic_write_text
from ppatch import constants, verbosity
from ppatch.errors import NotFoundError, UsageError, VerificationError

if TYPE_CHECKING:
    from ppatch.registry.client import RegistryClient
    from ppatch.registry.signed_index import SignedIndex

__all__ = [
    "KeyChangedError",
    "KeyRevokedError",
    "KeysChange",
    "ensure_trusted",
    "keys_change",
    "pin_keys",
    "pinned_keys",
    "public_keys",
    "registry_keys",
    "remember_revoked",
    "revoked_keys",
    "trust_from_registry",
    "trust_public_key_file",
]

PemByKeyId = dict[str, str]


@dataclass(frozen=True)
class KeysChange:
    """What `ppatch trust NS` would replace: the pinned keys (None before first use) and the
    keys it would pin instead."""

    namespace: str
    registry: str
    old: PemByKeyId | None
    new: PemByKeyId

    @property
    def changed(self) -> bool:
        return self.old is not None and set(self.old) != set(self.new)


class KeyRevokedError(VerificationError):
    def __init__(self, registry: str, namespace: str, key_id: str) -> None:
        super().__init__(
            f"namespace {namespace!r} on {registry} revoked key {key_id!r}; a patch signed with "
            "it is refused (the key may have been stolen)"
        )
        self.registry = registry
        self.namespace = namespace
        self.key_id = key_id


class KeyChangedError(VerificationError):
    def __init__(self, registry: str, namespace: str, key_id: str, pinned: list[str]) -> None:
        super().__init__(
            f"namespace {namespace!r} on {registry} signed with key {key_id!r}, which is not "
            f"pinned (pinned: {', '.join(pinned) or 'none'}); if the publisher changed keys on "
            f"purpose, run 'ppatch trust {namespace} --registry {registry}' to accept the new key"
        )
        self.registry = registry
        self.namespace = namespace
        self.key_id = key_id
        self.pinned = pinned


def _registry_key(registry: str) -> str:
    """One entry per registry however its URL is spelled (config.normalize_registry_url)."""
    from ppatch.config import normalize_registry_url

    try:
        return normalize_registry_url(registry)
    except UsageError:
        return registry


def _load_all() -> dict[str, Any]:
    path = constants.known_keys_file()
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {str(path)!r}: not valid TOML ({error})") from error


def _registry_table(table: str, registry: str) -> dict[str, Any]:
    """`[table."registry"]` of the file, by namespace; empty when absent. A table that is not
    one is refused: read as empty, it would silently drop a pin or a remembered revocation."""
    node: object = _load_all()
    for name in (table, _registry_key(registry)):
        if not isinstance(node, dict):
            break
        node = node.get(name, {})
    if not isinstance(node, dict):
        raise _malformed(f"[{table}] must hold one table per registry, each by namespace")
    return node


def _malformed(problem: str) -> UsageError:
    path = constants.known_keys_file()
    return UsageError(f"cannot read {str(path)!r}: {problem}; fix the entry or delete the file")


def pinned_keys(registry: str, namespace: str) -> PemByKeyId | None:
    """The pinned keys (key id to PEM) of a namespace, or None before first use."""
    entry = _registry_table("registries", registry).get(namespace)
    if entry is None:
        return None
    if not isinstance(entry, dict) or not all(isinstance(pem, str) for pem in entry.values()):
        raise _malformed(f"the keys pinned for {namespace!r} on {registry} must be key id = PEM")
    return dict(entry)


def revoked_keys(registry: str, namespace: str) -> set[str]:
    """The key ids of `namespace` this client has ever seen revoked."""
    entry = _registry_table("revoked", registry).get(namespace)
    if entry is None:
        return set()
    if not isinstance(entry, list) or not all(isinstance(item, str) for item in entry):
        raise _malformed(f"the keys revoked for {namespace!r} on {registry} must be a list of ids")
    return set(entry)


def _update(change: Callable[[dict[str, Any]], None]) -> None:
    """Read, change and atomically rewrite the whole file under its lock."""
    import filelock

    path = constants.known_keys_file()
    path.parent.mkdir(parents=True, exist_ok=True)  # the lock file's folder, and the file's
    # Two installs pinning different namespaces at once must not lose one of the pins.
    with filelock.FileLock(path.with_name(f"{path.name}.lock"), timeout=60):
        data = _load_all()
        change(data)
        atomic_write_text(path, tomli_w.dumps(data), mode=None)


def pin_keys(registry: str, namespace: str, keys: Mapping[str, str]) -> None:
    """Replace the pinned keys of a namespace (atomic write of the whole file)."""
    if not keys:
        raise UsageError(f"namespace {namespace!r} on {registry} has no active key to pin")
    _registry_table("registries", registry)  # refuses a file it could not update

    def change(data: dict[str, Any]) -> None:
        pins = data.setdefault("registries", {}).setdefault(_registry_key(registry), {})
        pins[namespace] = dict(keys)

    _update(change)


def remember_revoked(registry: str, namespace: str, key_ids: Iterable[str]) -> None:
    """Add `key_ids` to the namespace's revoked keys; never removes one."""
    new = set(key_ids) - revoked_keys(registry, namespace)
    if not new:
        return

    def change(data: dict[str, Any]) -> None:
        known = data.setdefault("revoked", {}).setdefault(_registry_key(registry), {})
        known[namespace] = sorted(set(known.get(namespace, [])) | new)

    _update(change)


def _checked_id(entry: Mapping[str, Any], namespace: str) -> tuple[str, str]:
    """(key id, PEM) of a keys-answer entry, the id recomputed from the PEM, not believed."""
    from patchfmt import key_id, load_public_key

    claimed, pem = entry.get("key_id"), entry.get("public_key")
    source = f"registry key {claimed!r} for {namespace!r}"
    if not isinstance(pem, str):
        raise VerificationError(f"{source}: has no public key")
    computed = key_id(load_public_key(pem.encode(), source=source))
    if claimed != computed:
        raise VerificationError(
            f"registry key for {namespace!r} claims id {claimed!r} but its public key has id "
            f"{computed!r}"
        )
    return computed, pem


def registry_keys(
    client: RegistryClient, namespace: str, signed: SignedIndex | None = None
) -> tuple[PemByKeyId, set[str]]:
    """The registry's active keys of `namespace` and the ids it says are revoked: from its
    `signed` index when it signs one (the unsigned keys endpoint is then not asked)."""
    body = signed.namespace_keys(namespace) if signed is not None else client.get_keys(namespace)
    if body.get("namespace") != namespace:
        raise VerificationError(
            f"asked {client.base_url} for the keys of {namespace!r} but it answered with the "
            f"keys of {body.get('namespace')!r}; refusing them"
        )
    active: PemByKeyId = {}
    revoked: set[str] = set()
    for entry in body.get("keys", []):
        if not isinstance(entry, dict):
            continue
        identifier, pem = _checked_id(entry, namespace)
        if entry.get("active", True):
            active[identifier] = pem
        else:
            revoked.add(identifier)
    return active, revoked


def _current(
    client: RegistryClient, namespace: str, signed: SignedIndex | None = None
) -> PemByKeyId:
    """The active keys worth pinning: the registry's, less any key ever seen revoked."""
    active, revoked = registry_keys(client, namespace, signed)
    remember_revoked(client.base_url, namespace, revoked)
    known_revoked = revoked_keys(client.base_url, namespace)
    return {key: pem for key, pem in active.items() if key not in known_revoked}


def keys_change(
    client: RegistryClient, namespace: str, signed: SignedIndex | None = None
) -> KeysChange:
    """What re-pinning `namespace` from the registry would change (`ppatch trust NS`)."""
    new = _current(client, namespace, signed)
    if not new:
        raise UsageError(f"namespace {namespace!r} on {client.base_url} has no active key to pin")
    return KeysChange(namespace, client.base_url, pinned_keys(client.base_url, namespace), new)


def trust_from_registry(client: RegistryClient, namespace: str) -> PemByKeyId:
    """Pin the registry's current active keys for `namespace`, without asking."""
    change = keys_change(client, namespace)
    pin_keys(client.base_url, namespace, change.new)
    return change.new


def trust_public_key_file(registry: str, namespace: str, path: Path) -> str:
    """Pin one key read from a PEM file (`ppatch trust NS --public-key PUB`); its key id."""
    from patchfmt import key_id, load_public_key

    try:
        pem = path.read_bytes()
    except FileNotFoundError as error:
        raise NotFoundError(f"public key file {str(path)!r} does not exist") from error
    except OSError as error:
        raise UsageError(f"cannot read public key {str(path)!r}: {error}") from error
    try:
        identifier = key_id(load_public_key(pem))
    except ValueError as error:
        raise UsageError(f"{str(path)!r} is not an Ed25519 public key in PEM: {error}") from error
    pin_keys(registry, namespace, {identifier: pem.decode("ascii")})
    return identifier


def ensure_trusted(
    client: RegistryClient, namespace: str, key_id: str, signed: SignedIndex | None = None
) -> PemByKeyId:
    """The pinned keys of `namespace`, pinning on first use; refuse a key that is not pinned
    or that was ever revoked. The keys come from the registry's `signed` index when given."""
    registry = client.base_url
    current = _current(client, namespace, signed)  # records revocations, even before the first pin
    if key_id in revoked_keys(registry, namespace):
        raise KeyRevokedError(registry, namespace, key_id)
    pinned = pinned_keys(registry, namespace)
    if pinned is None:
        pin_keys(registry, namespace, current)
        pinned = current
        verbosity.note(
            f"ppatch: pinned {len(pinned)} key(s) for namespace {namespace!r} on {registry}: "
            f"{', '.join(sorted(pinned))}"
        )
    if key_id not in pinned:
        raise KeyChangedError(registry, namespace, key_id, sorted(pinned))
    return pinned


def public_keys(pinned: Mapping[str, str]) -> dict[str, Any]:
    """Pinned PEMs as the `trusted` mapping `patchfmt.verify_patch` takes."""
    from patchfmt import load_public_key

    return {identifier: load_public_key(pem.encode()) for identifier, pem in pinned.items()}
