"""ed25519 signatures over the canonical manifest bytes.

A key's id is `ed25519:` followed by the first 16 hex digits of the sha256 of its 32 raw public
key bytes. Keys travel as PEM: PKCS#8 for private keys (unencrypted), SubjectPublicKeyInfo for
public keys. `signature.json` is canonical JSON `{"algorithm", "key_id", "signature"}` with the
64-byte signature as 128 lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from patchfmt.canonical import canonical_json, loads_strict
from patchfmt.errors import SignatureError

if TYPE_CHECKING:
    from patchfmt.container import PatchFile

__all__ = [
    "ALGORITHM",
    "MAX_SIGNATURE_BYTES",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "Signature",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_to_pem",
    "public_key_to_pem",
    "sign_manifest",
    "verify_patch",
    "verify_signature",
]

ALGORITHM: Final = "ed25519"
MAX_SIGNATURE_BYTES = 4096
_KEY_ID = re.compile(r"ed25519:[0-9a-f]{16}")
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{128}")


class Signature(BaseModel):
    """The content of `signature.json`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    algorithm: Literal["ed25519"]
    key_id: str
    signature: str

    @field_validator("key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _KEY_ID.fullmatch(value):
            raise ValueError("expected 'ed25519:' followed by 16 lowercase hex digits")
        return value

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str) -> str:
        if not _SIGNATURE_HEX.fullmatch(value):
            raise ValueError("expected 128 lowercase hex digits (a 64-byte ed25519 signature)")
        return value

    @classmethod
    def from_json_bytes(cls, data: bytes, *, source: str = "signature.json") -> Signature:
        if len(data) > MAX_SIGNATURE_BYTES:
            raise SignatureError(f"{source}: is {len(data)} bytes; at most {MAX_SIGNATURE_BYTES}")
        try:
            parsed = loads_strict(data)
        except ValueError as error:
            raise SignatureError(f"{source}: not valid UTF-8 JSON ({error})") from None
        if not isinstance(parsed, dict):
            raise SignatureError(f"{source}: must be a JSON object, found {parsed!r:.60}")
        key = parsed.get("key_id")
        try:
            return cls.model_validate(parsed, strict=True)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: "
                f"{str(item['msg']).removeprefix('Value error, ')}"
                for item in error.errors(include_url=False)
            )
            raise SignatureError(
                f"{source}: malformed ({problems})", key_id=key if isinstance(key, str) else None
            ) from None

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes, *, source: str = "private key") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise SignatureError(
            f"{source}: is encrypted; ppatch reads unencrypted PKCS#8 PEM ed25519 keys"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(
            f"{source}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----', "
            "ed25519, as written by 'ppatch keygen')"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        # cryptography >= 50 (the floor in pyproject) names its key classes plainly
        # (`ECPrivateKey`), so the class name is the kind of key to report.
        raise SignatureError(f"{source}: is a {type(key).__name__}; ppatch signs with ed25519 keys")
    return key


def load_public_key(pem: bytes, *, source: str = "public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(
            f"{source}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', ed25519, "
            "as written by 'ppatch keygen')"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{source}: is a {type(key).__name__}; ppatch verifies ed25519 keys")
    return key


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """`ed25519:` + the first 16 hex digits of sha256(raw 32-byte public key)."""
    public = public_key.public_key() if isinstance(public_key, Ed25519PrivateKey) else public_key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{hashlib.sha256(raw).hexdigest()[:16]}"


def sign_manifest(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> Signature:
    return Signature(
        algorithm=ALGORITHM,
        key_id=key_id(private_key),
        signature=private_key.sign(manifest_bytes).hex(),
    )


def verify_signature(
    manifest_bytes: bytes, signature: Signature, trusted: Mapping[str, Ed25519PublicKey]
) -> str:
    """The key id that verified `signature` over `manifest_bytes`; `SignatureError` otherwise."""
    public = trusted.get(signature.key_id)
    if public is None:
        known = ", ".join(sorted(trusted)) or "none"
        raise SignatureError(
            f"signed by key {signature.key_id!r}, which is not trusted (trusted keys: {known})",
            key_id=signature.key_id,
        )
    actual_id = key_id(public)
    if actual_id != signature.key_id:
        raise SignatureError(
            f"the trusted key listed as {signature.key_id!r} has id {actual_id!r}; "
            "fix the trust list",
            key_id=signature.key_id,
        )
    try:
        public.verify(bytes.fromhex(signature.signature), manifest_bytes)
    except InvalidSignature:
        raise SignatureError(
            f"the signature by key {signature.key_id!r} does not verify over manifest.json "
            "(the manifest or the signature was changed after signing)",
            key_id=signature.key_id,
        ) from None
    return signature.key_id


def verify_patch(patch: PatchFile, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Verify a read patch's signature against trusted keys; `SignatureError` if unsigned."""
    if patch.signature is None:
        raise SignatureError("the patch is not signed (it has no signature.json)")
    return verify_signature(patch.manifest_bytes, patch.signature, trusted)
