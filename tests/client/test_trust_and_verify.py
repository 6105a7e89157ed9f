"""Key pinning (trust on first use) and the checks every download passes before it is stored."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import FingerprintMismatchError, PatchFormatError, key_id, public_key_to_pem
from ppatch import store, trust
from ppatch.errors import UsageError, VerificationError
from ppatch.install import fetch_verified
from ppatch.registry.client import RegistryClient
from ppatch.resolver import Pin
from ppatch.trust import KeyChangedError, KeyRevokedError
from tests.client.conftest import build_patch, stored_files

BASE = "http://registry.test"
MODEL = "sha256:" + "1" * 64
OTHER_MODEL = "sha256:" + "2" * 64
KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32)


def keys_body(
    *keys: Ed25519PrivateKey,
    claimed: str | None = None,
    revoked: tuple[Ed25519PrivateKey, ...] = (),
    namespace: str = "acme",
) -> dict[str, object]:
    return {
        "namespace": namespace,
        "keys": [
            {
                "key_id": claimed or key_id(key),
                "public_key": public_key_to_pem(key).decode(),
                "active": key not in revoked,
            }
            for key in (*keys, *revoked)
        ],
    }


class FakeRegistry:
    """Serves one namespace's keys and one blob; counts key requests."""

    def __init__(self, blob: bytes, keys: dict[str, object]) -> None:
        self.blob, self.keys, self.key_requests = blob, keys, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/namespaces/acme/keys":
            self.key_requests += 1
            return httpx.Response(200, json=self.keys)
        if request.url.path.startswith("/blobs/"):
            return httpx.Response(200, content=self.blob)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})


def client(fake: FakeRegistry) -> RegistryClient:
    return RegistryClient(BASE, transport=httpx.MockTransport(fake), retries=0)


def pin_for(data: bytes, name: str = "toxicity", version: str = "1.0.0") -> Pin:
    digest = hashlib.sha256(data).hexdigest()
    return Pin("acme", name, version, MODEL, digest, len(data), f"/blobs/sha256/{digest}", "t")


def test_first_use_pins_the_namespace_keys_then_uses_the_pin() -> None:
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry:
        pinned = trust.ensure_trusted(registry, "acme", key_id(KEY))
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    assert list(pinned) == [key_id(KEY)]
    assert fake.key_requests == 2  # every check reads the keys again, for revocations
    assert trust.pinned_keys(BASE, "acme") == {key_id(KEY): public_key_to_pem(KEY).decode()}


def test_a_key_that_is_not_pinned_is_refused_even_if_the_registry_offers_it() -> None:
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
        fake.keys = keys_body(OTHER_KEY)
        with pytest.raises(KeyChangedError) as caught:
            trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))
    assert caught.value.pinned == [key_id(KEY)]
    assert f"'ppatch trust acme --registry {BASE}'" in str(caught.value)
    # Accepting the change on purpose replaces the pin.
    with client(fake) as registry:
        trust.trust_from_registry(registry, "acme")
        trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))


def test_a_revoked_key_is_refused_even_while_pinned() -> None:
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
        fake.keys = keys_body(OTHER_KEY, revoked=(KEY,))
        with pytest.raises(KeyRevokedError, match="revoked key"):
            trust.ensure_trusted(registry, "acme", key_id(KEY))


def test_a_replayed_answer_cannot_bring_a_revoked_key_back() -> None:
    fake = FakeRegistry(b"", keys_body(OTHER_KEY, revoked=(KEY,)))
    with client(fake) as registry:
        trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))
        fake.keys = keys_body(KEY)  # the answer from before the revocation
        with pytest.raises(KeyRevokedError):
            trust.ensure_trusted(registry, "acme", key_id(KEY))
        # Nor does `ppatch trust acme` re-pin it.
        with pytest.raises(UsageError, match="no active key"):
            trust.trust_from_registry(registry, "acme")
    assert trust.pinned_keys(BASE, "acme") == {
        key_id(OTHER_KEY): public_key_to_pem(OTHER_KEY).decode()
    }


def test_keys_answered_for_another_namespace_are_refused() -> None:
    fake = FakeRegistry(b"", keys_body(OTHER_KEY, namespace="evil"))
    with client(fake) as registry, pytest.raises(VerificationError, match="keys of 'evil'"):
        trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))
    assert trust.pinned_keys(BASE, "acme") is None


def test_keys_change_shows_the_old_and_the_new_keys() -> None:
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry:
        first = trust.keys_change(registry, "acme")
        assert (first.old, first.changed) == (None, False)
        trust.trust_from_registry(registry, "acme")
        fake.keys = keys_body(OTHER_KEY)
        change = trust.keys_change(registry, "acme")
    assert change.changed
    assert change.old is not None and list(change.old) == [key_id(KEY)]
    assert list(change.new) == [key_id(OTHER_KEY)]
    assert list(trust.pinned_keys(BASE, "acme") or {}) == [key_id(KEY)]  # nothing pinned yet


def test_a_registry_lying_about_a_key_id_is_refused() -> None:
    fake = FakeRegistry(b"", keys_body(KEY, claimed="not-the-id"))
    with client(fake) as registry, pytest.raises(VerificationError, match="claims id"):
        trust.ensure_trusted(registry, "acme", "not-the-id")
    assert trust.pinned_keys(BASE, "acme") is None


def test_a_verified_download_lands_in_the_store() -> None:
    data = build_patch("acme/toxicity", "1.0.0", MODEL, KEY)
    with client(FakeRegistry(data, keys_body(KEY))) as registry:
        path = fetch_verified(registry, pin_for(data), MODEL)
    assert path == store.blob_path(hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    ("data", "pin_name", "model", "error", "message"),
    [
        (build_patch("acme/other", "1.0.0", MODEL, KEY), "toxicity", MODEL,
         VerificationError, "but the index promised acme/toxicity 1.0.0"),
        (build_patch("acme/toxicity", "1.0.0", MODEL, None), "toxicity", MODEL,
         VerificationError, "is not signed"),
        (build_patch("acme/toxicity", "1.0.0", MODEL, OTHER_KEY), "toxicity", MODEL,
         KeyChangedError, "which is not pinned"),
        (build_patch("acme/toxicity", "1.0.0", OTHER_MODEL, KEY), "toxicity", MODEL,
         FingerprintMismatchError, OTHER_MODEL),
    ],
)  # fmt: skip
def test_a_download_failing_a_check_leaves_nothing(
    data: bytes, pin_name: str, model: str, error: type[Exception], message: str
) -> None:
    with client(FakeRegistry(data, keys_body(KEY))) as registry, pytest.raises(error) as caught:
        fetch_verified(registry, pin_for(data, pin_name), model)
    assert message in str(caught.value)
    assert stored_files() == []


def test_a_damaged_cached_blob_is_downloaded_again() -> None:
    data = build_patch("acme/toxicity", "1.0.0", MODEL, KEY)
    pin = pin_for(data)
    with client(FakeRegistry(data, keys_body(KEY))) as registry:
        path = fetch_verified(registry, pin, MODEL)
        path.write_bytes(b"bit rot")
        assert fetch_verified(registry, pin, MODEL).read_bytes() == data
    path.write_bytes(b"bit rot")
    with pytest.raises(VerificationError, match="the file was changed"):
        fetch_verified(None, pin, MODEL)


def forged(data: bytes) -> bytes:
    """`data` with its manifest's summary changed after signing: the signature names the real,
    pinned key, but no longer verifies over the manifest (an independent forgery, made with
    zipfile rather than with patchfmt's writer)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "manifest.json":
                assert b"for tests" in content
                content = content.replace(b"for tests", b"FOR TESTS")
            out.writestr(info, content)
    return buffer.getvalue()


def test_a_pinned_key_whose_signature_does_not_verify_is_refused() -> None:
    data = forged(build_patch("acme/toxicity", "1.0.0", MODEL, KEY))
    from patchfmt import read_patch

    patch = read_patch(data)  # well-formed, signed by KEY's id: only the signature is wrong
    assert patch.signature is not None and patch.signature.key_id == key_id(KEY)
    with client(FakeRegistry(data, keys_body(KEY))) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))  # KEY is pinned beforehand
        # patchfmt's SignatureError or a client VerificationError: either is a refusal.
        with pytest.raises((VerificationError, PatchFormatError), match="does not verify"):
            fetch_verified(registry, pin_for(data), MODEL)
    assert stored_files() == []


def test_a_revoked_key_is_never_pinned_on_first_use() -> None:
    body = keys_body(KEY, OTHER_KEY)
    body["keys"][1]["active"] = False  # type: ignore[index]
    with client(FakeRegistry(b"", body)) as registry:
        pinned = trust.ensure_trusted(registry, "acme", key_id(KEY))
        assert set(pinned) == {key_id(KEY)}
        # Refused: as not pinned (KeyChangedError) or as revoked (KeyRevokedError).
        with pytest.raises(VerificationError):
            trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))
    assert trust.pinned_keys(BASE, "acme") == {key_id(KEY): public_key_to_pem(KEY).decode()}


def test_a_patch_signed_by_a_revoked_key_is_refused_at_first_install() -> None:
    data = build_patch("acme/toxicity", "1.0.0", MODEL, OTHER_KEY)
    body = keys_body(KEY, OTHER_KEY)
    body["keys"][1]["active"] = False  # type: ignore[index]
    with client(FakeRegistry(data, body)) as registry, pytest.raises(VerificationError):
        fetch_verified(registry, pin_for(data), MODEL)
    assert stored_files() == []
    assert key_id(OTHER_KEY) not in (trust.pinned_keys(BASE, "acme") or {})
