"""ed25519 signing: key ids, PEM keys, sign and verify over the canonical manifest bytes."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import (
    Manifest,
    Signature,
    SignatureError,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    pack_patch,
    private_key_to_pem,
    public_key_to_pem,
    read_patch,
    sign_manifest,
    verify_patch,
    verify_signature,
)


def test_key_id_is_derived_from_the_raw_public_key(private_key: Ed25519PrivateKey) -> None:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
    assert key_id(private_key) == key_id(private_key.public_key()) == expected


def test_pem_round_trip() -> None:
    key = generate_private_key()
    private_pem = private_key_to_pem(key)
    public_pem = public_key_to_pem(key)
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key_id(load_private_key(private_pem)) == key_id(key)
    assert key_id(load_public_key(public_pem)) == key_id(key)


def _ec_private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _encrypted_pem() -> bytes:
    return generate_private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("pem", "fragment"),
    [
        (b"not a key", "not a PEM private key"),
        (b"", "not a PEM private key"),
        (_ec_private_pem(), "ppatch signs with ed25519 keys"),
        (_encrypted_pem(), "is encrypted"),
    ],
)
def test_bad_private_keys(pem: bytes, fragment: str) -> None:
    with pytest.raises(SignatureError) as caught:
        load_private_key(pem, source="key.pem")
    assert str(caught.value).startswith("key.pem: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("pem", "fragment"),
    [
        (b"garbage", "not a PEM public key"),
        (private_key_to_pem(generate_private_key()), "not a PEM public key"),
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "ppatch verifies ed25519 keys",
        ),
    ],
)
def test_bad_public_keys(pem: bytes, fragment: str) -> None:
    with pytest.raises(SignatureError, match=fragment):
        load_public_key(pem)


def test_sign_and_verify(manifest: Manifest, private_key: Ed25519PrivateKey) -> None:
    data = manifest.canonical_bytes()
    signature = sign_manifest(data, private_key)
    assert signature.algorithm == "ed25519"
    assert signature.key_id == key_id(private_key)
    assert len(signature.signature) == 128
    trusted = {key_id(private_key): private_key.public_key()}
    assert verify_signature(data, signature, trusted) == key_id(private_key)
    # Deterministic: the same key and bytes give the same signature.
    assert sign_manifest(data, private_key) == signature


def test_untrusted_key_is_refused_naming_it(
    manifest: Manifest, private_key: Ed25519PrivateKey
) -> None:
    signature = sign_manifest(manifest.canonical_bytes(), private_key)
    other = generate_private_key().public_key()
    with pytest.raises(SignatureError) as caught:
        verify_signature(manifest.canonical_bytes(), signature, {key_id(other): other})
    assert caught.value.key_id == key_id(private_key)
    assert key_id(private_key) in str(caught.value)
    assert key_id(other) in str(caught.value)


def test_changed_manifest_does_not_verify(
    manifest: Manifest, private_key: Ed25519PrivateKey
) -> None:
    signature = sign_manifest(manifest.canonical_bytes(), private_key)
    changed = manifest.model_copy(update={"version": "1.2.1"}).canonical_bytes()
    trusted = {key_id(private_key): private_key.public_key()}
    with pytest.raises(SignatureError, match=r"does not verify over manifest\.json"):
        verify_signature(changed, signature, trusted)


def test_a_trust_list_under_the_wrong_id_is_refused(
    manifest: Manifest, private_key: Ed25519PrivateKey
) -> None:
    signature = sign_manifest(manifest.canonical_bytes(), private_key)
    impostor = generate_private_key().public_key()
    with pytest.raises(SignatureError, match="fix the trust list"):
        verify_signature(manifest.canonical_bytes(), signature, {signature.key_id: impostor})


def test_verify_patch(manifest: Manifest, weights: bytes, private_key: Ed25519PrivateKey) -> None:
    trusted = {key_id(private_key): private_key.public_key()}
    signed = read_patch(
        pack_patch(manifest, weights, sign_manifest(manifest.canonical_bytes(), private_key))
    )
    assert verify_patch(signed, trusted) == key_id(private_key)
    unsigned = read_patch(pack_patch(manifest, weights))
    with pytest.raises(SignatureError, match="not signed"):
        verify_patch(unsigned, trusted)


def test_signature_json_is_canonical(manifest: Manifest, private_key: Ed25519PrivateKey) -> None:
    signature = sign_manifest(manifest.canonical_bytes(), private_key)
    data = signature.canonical_bytes()
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    assert Signature.from_json_bytes(data) == signature


VALID = {"algorithm": "ed25519", "key_id": "ed25519:" + "a" * 16, "signature": "b" * 128}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "not valid UTF-8 JSON"),
        (b"[]", "must be a JSON object"),
        (json.dumps(VALID | {"algorithm": "rsa"}).encode(), "algorithm"),
        (json.dumps(VALID | {"key_id": "rsa:1234"}).encode(), "16 lowercase hex"),
        (json.dumps(VALID | {"signature": "B" * 128}).encode(), "128 lowercase hex"),
        (json.dumps(VALID | {"signature": "b" * 64}).encode(), "128 lowercase hex"),
        (json.dumps(VALID | {"comment": "hi"}).encode(), "comment"),
        (json.dumps({"algorithm": "ed25519"}).encode(), "key_id"),
        (json.dumps(VALID | {"key_id": "\ud800"}).encode(), "16 lowercase hex"),
        (json.dumps(VALID | {"signature": 7}).encode(), "valid string"),
        (b" " * 5000, "at most 4096"),
    ],
)
def test_malformed_signature_json(data: bytes, fragment: str) -> None:
    with pytest.raises(SignatureError) as caught:
        Signature.from_json_bytes(data)
    assert str(caught.value).startswith("signature.json: ")
    assert fragment in str(caught.value)


def test_public_pem_is_the_same_from_either_half_of_a_pair(private_key: Ed25519PrivateKey) -> None:
    from_public = public_key_to_pem(private_key.public_key())
    assert from_public == public_key_to_pem(private_key)
    assert key_id(load_public_key(from_public)) == key_id(private_key)


def test_signature_json_of_exactly_the_limit_is_read() -> None:
    # JSON allows whitespace after the object: pad the canonical form to 4096 bytes exactly.
    data = json.dumps(VALID).encode()
    assert Signature.from_json_bytes(data + b" " * (4096 - len(data))).key_id == VALID["key_id"]
    with pytest.raises(SignatureError, match="is 4097 bytes; at most 4096"):
        Signature.from_json_bytes(data + b" " * (4097 - len(data)))


def test_a_malformed_signature_error_carries_the_claimed_key_id() -> None:
    with pytest.raises(SignatureError) as caught:
        Signature.from_json_bytes(json.dumps(VALID | {"signature": "b" * 64}).encode())
    assert caught.value.key_id == VALID["key_id"]
    # The field, then pydantic's message without its "Value error, " prefix.
    assert "(signature: expected 128 lowercase hex digits" in str(caught.value)
    with pytest.raises(SignatureError) as caught:
        Signature.from_json_bytes(json.dumps(VALID | {"key_id": 7}).encode())
    assert caught.value.key_id is None


def test_refusals_name_the_key_and_the_trusted_keys(
    manifest: Manifest, private_key: Ed25519PrivateKey
) -> None:
    data = manifest.canonical_bytes()
    signature = sign_manifest(data, private_key)
    signer = key_id(private_key)
    with pytest.raises(SignatureError) as caught:
        verify_signature(data, signature, {})
    assert str(caught.value) == (
        f"signed by key {signer!r}, which is not trusted (trusted keys: none)"
    )
    first, second = generate_private_key(), generate_private_key()
    trusted = {key_id(k): k.public_key() for k in (first, second)}
    with pytest.raises(SignatureError) as caught:
        verify_signature(data, signature, trusted)
    assert f"(trusted keys: {', '.join(sorted(trusted))})" in str(caught.value)
    impostor = generate_private_key().public_key()
    with pytest.raises(SignatureError) as caught:
        verify_signature(data, signature, {signer: impostor})
    assert caught.value.key_id == signer
    assert str(caught.value).endswith("fix the trust list")
    changed = manifest.model_copy(update={"version": "1.2.1"}).canonical_bytes()
    with pytest.raises(SignatureError) as caught:
        verify_signature(changed, signature, {signer: private_key.public_key()})
    assert caught.value.key_id == signer
    assert str(caught.value).endswith("(the manifest or the signature was changed after signing)")


# The refusals below are what a person reads on the command line (one line naming the problem),
# so each is asserted whole, written out by hand.


def test_a_bad_private_key_without_a_source_is_named_as_the_private_key() -> None:
    with pytest.raises(SignatureError) as caught:
        load_private_key(b"not a key")
    assert str(caught.value) == (
        "private key: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----', "
        "ed25519, as written by 'ppatch keygen')"
    )


def test_a_bad_public_key_without_a_source_is_named_as_the_public_key() -> None:
    with pytest.raises(SignatureError) as caught:
        load_public_key(b"garbage")
    assert str(caught.value) == (
        "public key: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', ed25519, "
        "as written by 'ppatch keygen')"
    )


def _x448_private_pem() -> bytes:
    return x448.X448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _x448_public_pem() -> bytes:
    return (
        x448.X448PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("pem", "kind"),
    [(_ec_private_pem(), "ECPrivateKey"), (_x448_private_pem(), "X448PrivateKey")],
)
def test_a_private_key_of_another_algorithm_is_named_by_its_kind(pem: bytes, kind: str) -> None:
    with pytest.raises(SignatureError) as caught:
        load_private_key(pem)
    assert str(caught.value) == f"private key: is a {kind}; ppatch signs with ed25519 keys"


@pytest.mark.parametrize(
    ("pem", "kind"),
    [
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "ECPublicKey",
        ),
        (_x448_public_pem(), "X448PublicKey"),
    ],
)
def test_a_public_key_of_another_algorithm_is_named_by_its_kind(pem: bytes, kind: str) -> None:
    with pytest.raises(SignatureError) as caught:
        load_public_key(pem, source="pub.pem")
    assert str(caught.value) == f"pub.pem: is a {kind}; ppatch verifies ed25519 keys"


def test_an_unsigned_patch_is_refused_with_one_clear_line(
    manifest: Manifest, weights: bytes, private_key: Ed25519PrivateKey
) -> None:
    unsigned = read_patch(pack_patch(manifest, weights))
    with pytest.raises(SignatureError) as caught:
        verify_patch(unsigned, {key_id(private_key): private_key.public_key()})
    assert str(caught.value) == "the patch is not signed (it has no signature.json)"
    assert caught.value.key_id is None


def test_every_problem_of_a_malformed_signature_is_listed_in_field_order() -> None:
    data = json.dumps(VALID | {"key_id": "ed25519:ABC", "signature": "b" * 64}).encode()
    with pytest.raises(SignatureError) as caught:
        Signature.from_json_bytes(data, source="sig.json")
    assert str(caught.value) == (
        "sig.json: malformed (key_id: expected 'ed25519:' followed by 16 lowercase hex digits; "
        "signature: expected 128 lowercase hex digits (a 64-byte ed25519 signature))"
    )
    assert caught.value.key_id == "ed25519:ABC"
