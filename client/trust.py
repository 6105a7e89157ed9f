"""Which public keys may sign a namespace's patches: trust on first use, then pinned.

The first time a namespace of a registry is used, its active keys (from
`GET /api/v1/namespaces/{ns}/keys`) are pinned in `known_keys.toml`, as SSH pins a host key in
`known_hosts`. Afterwards a patch signed by any other key is refused with `KeyChangedError`,
which says how to accept the change on purpose (`ppatch trust NS`). `ppatch trust NS
--public-key PUB` pins a key given out of band instead of the registry's.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from patchfmt.atomic import atomic_write_text
from ppatch import constants
from ppatch.errors import NotFoundError, UsageError, VerificationError

if TYPE_CHECKING:
    from ppatch.registry.client import RegistryClient

__all__ = [
    "KeyChangedError",
    "ensure_trusted",
    "pin_keys",
    "pinned_keys",
    "public_keys",
    "trust_from_registry",
    "trust_public_key_file",
]

PemByKeyId = dict[str, str]


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


def _load_all() -> dict[str, Any]:
    path = constants.known_keys_file()
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {str(path)!r}: not valid TOML ({error})") from error


def pinned_keys(registry: str, namespace: str) -> PemByKeyId | None:
    """The pinned keys (key id to PEM) of a namespace, or None before first use."""
    entry = _load_all().get("registries", {}).get(registry, {}).get(namespace)
    if not isinstance(entry, dict):
        return None
    return {str(key_id): str(pem) for key_id, pem in entry.items()}


def pin_keys(registry: str, namespace: str, keys: Mapping[str, str]) -> None:
    """Replace the pinned keys of a namespace (atomic write of the whole file)."""
    if not keys:
        raise UsageError(f"namespace {namespace!r} on {registry} has no active key to pin")
    import filelock

    path = constants.known_keys_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two installs pinning different namespaces at once must not lose one of the pins.
    with filelock.FileLock(path.with_name(f"{path.name}.lock"), timeout=60):
        data = _load_all()
        data.setdefault("registries", {}).setdefault(registry, {})[namespace] = dict(keys)
        atomic_write_text(path, tomli_w.dumps(data), mode=None, make_parents=True)


def _checked_keys(body: Mapping[str, Any], namespace: str) -> PemByKeyId:
    """Active keys from a keys answer, each key id recomputed from its PEM, not believed."""
    from patchfmt import key_id, load_public_key

    keys: PemByKeyId = {}
    for entry in body.get("keys", []):
        if not isinstance(entry, dict) or not entry.get("active", True):
            continue
        pem = str(entry.get("public_key", ""))
        computed = key_id(load_public_key(pem.encode()))
        if entry.get("key_id") != computed:
            raise VerificationError(
                f"registry key for {namespace!r} claims id {entry.get('key_id')!r} but its "
                f"public key has id {computed!r}"
            )
        keys[computed] = pem
    return keys


def trust_from_registry(client: RegistryClient, namespace: str) -> PemByKeyId:
    """Pin the registry's current active keys for `namespace` (`ppatch trust NS`)."""
    keys = _checked_keys(client.get_keys(namespace), namespace)
    pin_keys(client.base_url, namespace, keys)
    return keys


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


def ensure_trusted(client: RegistryClient, namespace: str, key_id: str) -> PemByKeyId:
    """The pinned keys of `namespace`, pinning on first use; refuse a key that is not pinned."""
    registry = client.base_url
    pinned = pinned_keys(registry, namespace)
    if pinned is None:
        pinned = trust_from_registry(client, namespace)
        print(
            f"ppatch: pinned {len(pinned)} key(s) for namespace {namespace!r} on {registry}: "
            f"{', '.join(sorted(pinned))}",
            file=sys.stderr,
        )
    if key_id not in pinned:
        raise KeyChangedError(registry, namespace, key_id, sorted(pinned))
    return pinned


def public_keys(pinned: Mapping[str, str]) -> dict[str, Any]:
    """Pinned PEMs as the `trusted` mapping `patchfmt.verify_patch` takes."""
    from patchfmt import load_public_key

    return {identifier: load_public_key(pem.encode()) for identifier, pem in pinned.items()}
