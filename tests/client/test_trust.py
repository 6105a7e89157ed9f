"""client/trust.py decision by decision: the refusals a person reads (asserted whole, written
out by hand), the pins file it keeps, and keys taken from a signed index rather than from the
registry's unsigned answer. End-to-end pinning through downloads: test_trust_and_verify.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import SignatureError, key_id, private_key_to_pem, public_key_to_pem
from ppatch import constants, trust
from ppatch.errors import NotFoundError, UsageError, VerificationError
from ppatch.registry.signed_index import SignedIndex
from ppatch.trust import KeyChangedError, KeyRevokedError
from tests.client.test_trust_and_verify import BASE, KEY, OTHER_KEY, FakeRegistry, client, keys_body

THIRD_KEY = Ed25519PrivateKey.from_private_bytes(bytes([5]) * 32)


def pem(key: Ed25519PrivateKey) -> str:
    return public_key_to_pem(key).decode()


def write_known_keys(text: str) -> Path:
    path = constants.known_keys_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


# -- the refusals ----------------------------------------------------------------------------


def test_a_revoked_key_is_refused_naming_the_registry_namespace_and_key() -> None:
    fake = FakeRegistry(b"", keys_body(OTHER_KEY, revoked=(KEY,)))
    with client(fake) as registry, pytest.raises(KeyRevokedError) as caught:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    assert str(caught.value) == (
        f"namespace 'acme' on http://registry.test revoked key '{key_id(KEY)}'; a patch signed "
        "with it is refused (the key may have been stolen)"
    )
    assert (caught.value.registry, caught.value.namespace, caught.value.key_id) == (
        BASE,
        "acme",
        key_id(KEY),
    )


def test_a_key_that_is_not_pinned_is_refused_naming_every_pinned_key() -> None:
    fake = FakeRegistry(b"", keys_body(KEY, THIRD_KEY))
    with client(fake) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
        with pytest.raises(KeyChangedError) as caught:
            trust.ensure_trusted(registry, "acme", key_id(OTHER_KEY))
    pinned = sorted([key_id(KEY), key_id(THIRD_KEY)])
    assert str(caught.value) == (
        f"namespace 'acme' on http://registry.test signed with key '{key_id(OTHER_KEY)}', which "
        f"is not pinned (pinned: {pinned[0]}, {pinned[1]}); if the publisher changed keys on "
        "purpose, run 'ppatch trust acme --registry http://registry.test' to accept the new key"
    )
    error = caught.value
    assert (error.registry, error.namespace, error.key_id, error.pinned) == (
        BASE,
        "acme",
        key_id(OTHER_KEY),
        pinned,
    )


def test_an_empty_pin_table_trusts_no_key_and_says_so() -> None:
    # Written by hand: the namespace was pinned, but every key was deleted from its table.
    write_known_keys('[registries."http://registry.test".acme]\n')
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry, pytest.raises(KeyChangedError) as caught:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    assert "is not pinned (pinned: none); if the publisher" in str(caught.value)
    assert caught.value.pinned == []


def test_first_use_tells_which_keys_it_pinned(capsys: pytest.CaptureFixture[str]) -> None:
    with client(FakeRegistry(b"", keys_body(KEY, THIRD_KEY))) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    first, second = sorted([key_id(KEY), key_id(THIRD_KEY)])
    assert capsys.readouterr().err == (
        f"ppatch: pinned 2 key(s) for namespace 'acme' on http://registry.test: {first}, {second}\n"
    )


def test_a_registry_key_whose_id_is_not_its_own_is_refused_naming_both_ids() -> None:
    fake = FakeRegistry(b"", keys_body(KEY, claimed="ed25519:0000000000000000"))
    with client(fake) as registry, pytest.raises(VerificationError) as caught:
        trust.registry_keys(registry, "acme")
    assert str(caught.value) == (
        "registry key for 'acme' claims id 'ed25519:0000000000000000' but its public key has "
        f"id '{key_id(KEY)}'"
    )


@pytest.mark.parametrize(
    ("public_key", "error", "reason"),
    [
        (None, VerificationError, "has no public key"),
        (7, VerificationError, "has no public key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", SignatureError,
         "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', ed25519, as written by "
         "'ppatch keygen')"),
    ],
)  # fmt: skip
def test_a_registry_key_without_a_usable_public_key_is_refused_naming_it(
    public_key: object, error: type[Exception], reason: str
) -> None:
    body = keys_body(KEY)
    entry = cast(list[dict[str, Any]], body["keys"])[0]
    if public_key is None:
        del entry["public_key"]
    else:
        entry["public_key"] = public_key
    with client(FakeRegistry(b"", body)) as registry, pytest.raises(error) as caught:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    assert str(caught.value) == f"registry key '{key_id(KEY)}' for 'acme': {reason}"
    assert trust.pinned_keys(BASE, "acme") is None


def test_pinning_no_key_is_refused() -> None:
    with pytest.raises(UsageError) as caught:
        trust.pin_keys(BASE, "acme", {})
    assert str(caught.value) == (
        "namespace 'acme' on http://registry.test has no active key to pin"
    )
    assert not constants.known_keys_file().exists()


# -- the keys answer -------------------------------------------------------------------------


def test_an_answer_without_keys_offers_none() -> None:
    with client(FakeRegistry(b"", {"namespace": "acme"})) as registry:
        assert trust.registry_keys(registry, "acme") == ({}, set())


def test_entries_that_are_not_objects_are_skipped_not_the_rest_of_the_answer() -> None:
    body = keys_body(KEY)
    body["keys"] = [7, "junk", *cast(list[Any], body["keys"])]
    with client(FakeRegistry(b"", body)) as registry:
        assert trust.registry_keys(registry, "acme") == ({key_id(KEY): pem(KEY)}, set())


def test_an_entry_without_an_active_flag_is_active_and_false_is_revoked() -> None:
    body = keys_body(KEY, OTHER_KEY)
    entries = cast(list[dict[str, Any]], body["keys"])
    del entries[0]["active"]
    entries[1]["active"] = False
    with client(FakeRegistry(b"", body)) as registry:
        active, revoked = trust.registry_keys(registry, "acme")
    assert active == {key_id(KEY): pem(KEY)}
    assert revoked == {key_id(OTHER_KEY)}


def test_keys_change_names_its_namespace_and_registry() -> None:
    with client(FakeRegistry(b"", keys_body(KEY))) as registry:
        change = trust.keys_change(registry, "acme")
    assert (change.namespace, change.registry, change.old, change.new) == (
        "acme",
        BASE,
        None,
        {key_id(KEY): pem(KEY)},
    )


# -- keys from the signed index --------------------------------------------------------------


class FakeSignedIndex:
    """Serves keys answers by namespace, as `SignedIndex.namespace_keys` does from its signed
    targets; a namespace it has no keys for is refused, as the real one refuses it."""

    def __init__(self, answers: dict[str, dict[str, object]]) -> None:
        self.answers = answers

    def namespace_keys(self, namespace: str) -> dict[str, object]:
        if namespace not in self.answers:
            raise VerificationError(f"no keys for namespace {namespace!r}")
        return self.answers[namespace]


def signed(body: dict[str, object]) -> SignedIndex:
    return cast(SignedIndex, FakeSignedIndex({"acme": body}))


def test_a_signed_index_is_the_only_source_of_keys_when_given() -> None:
    # The unsigned endpoint offers OTHER_KEY; the signed index says KEY: only the index counts.
    fake = FakeRegistry(b"", keys_body(OTHER_KEY))
    index = signed(keys_body(KEY, revoked=(THIRD_KEY,)))
    with client(fake) as registry:
        assert trust.registry_keys(registry, "acme", index) == (
            {key_id(KEY): pem(KEY)},
            {key_id(THIRD_KEY)},
        )
        assert trust.keys_change(registry, "acme", index).new == {key_id(KEY): pem(KEY)}
        assert trust.ensure_trusted(registry, "acme", key_id(KEY), index) == {key_id(KEY): pem(KEY)}
    assert fake.key_requests == 0
    assert trust.revoked_keys(BASE, "acme") == {key_id(THIRD_KEY)}


def test_a_revocation_in_the_signed_index_is_refused_even_if_the_registry_hides_it() -> None:
    fake = FakeRegistry(b"", keys_body(KEY))  # the unsigned answer still calls KEY active
    with client(fake) as registry:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
        index = signed(keys_body(OTHER_KEY, revoked=(KEY,)))
        with pytest.raises(KeyRevokedError):
            trust.ensure_trusted(registry, "acme", key_id(KEY), index)


# -- the pins file ---------------------------------------------------------------------------


def test_the_pins_file_is_made_with_its_folders_and_kept_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPATCH_HOME", str(tmp_path / "not" / "yet" / "made"))
    trust.pin_keys(BASE, "acme", {key_id(KEY): pem(KEY)})
    path = constants.known_keys_file()
    assert path == tmp_path / "not" / "yet" / "made" / "config" / "known_keys.toml"
    assert tomllib.loads(path.read_text("utf-8")) == {
        "registries": {BASE: {"acme": {key_id(KEY): pem(KEY)}}}
    }
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_pins_file_that_is_not_toml_is_refused_naming_it() -> None:
    path = write_known_keys("[registries\n")
    with pytest.raises(tomllib.TOMLDecodeError) as parse_error:
        tomllib.loads("[registries\n")
    with pytest.raises(UsageError) as caught:
        trust.pinned_keys(BASE, "acme")
    assert str(caught.value) == (f"cannot read {str(path)!r}: not valid TOML ({parse_error.value})")


BASE_TABLE = '"http://registry.test"'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('registries = "none"\n',
         "[registries] must hold one table per registry, each by namespace"),
        (f"[registries]\n{BASE_TABLE} = 3\n",
         "[registries] must hold one table per registry, each by namespace"),
        (f'[registries.{BASE_TABLE}]\nacme = "ed25519:0000000000000000"\n',
         "the keys pinned for 'acme' on http://registry.test must be key id = PEM"),
        (f'[registries.{BASE_TABLE}.acme]\n"ed25519:0000000000000000" = 7\n',
         "the keys pinned for 'acme' on http://registry.test must be key id = PEM"),
        ('revoked = ["ed25519:0000000000000000"]\n',
         "[revoked] must hold one table per registry, each by namespace"),
        (f'[revoked.{BASE_TABLE}]\nacme = "ed25519:0000000000000000"\n',
         "the keys revoked for 'acme' on http://registry.test must be a list of ids"),
        (f"[revoked.{BASE_TABLE}]\nacme = [7]\n",
         "the keys revoked for 'acme' on http://registry.test must be a list of ids"),
    ],
)  # fmt: skip
def test_a_damaged_pins_file_is_refused_not_read_as_empty(text: str, problem: str) -> None:
    # Read as empty, a damaged entry would re-pin whatever the registry offers, or forget that
    # a key was revoked and accept it again.
    path = write_known_keys(text)
    fake = FakeRegistry(b"", keys_body(KEY))
    with client(fake) as registry, pytest.raises(UsageError) as caught:
        trust.ensure_trusted(registry, "acme", key_id(KEY))
    assert str(caught.value) == (
        f"cannot read {str(path)!r}: {problem}; fix the entry or delete the file"
    )
    assert path.read_text("utf-8") == text


def test_pinning_into_a_damaged_pins_file_is_refused() -> None:
    path = write_known_keys('registries = "none"\n')
    with pytest.raises(UsageError, match=r"\[registries\] must hold one table per registry"):
        trust.pin_keys(BASE, "acme", {key_id(KEY): pem(KEY)})
    assert path.read_text("utf-8") == 'registries = "none"\n'


def test_nothing_pinned_or_revoked_reads_as_none_and_empty() -> None:
    assert trust.pinned_keys(BASE, "acme") is None
    assert trust.revoked_keys(BASE, "acme") == set()
    trust.pin_keys(BASE, "beta", {key_id(KEY): pem(KEY)})
    trust.remember_revoked(BASE, "beta", [key_id(OTHER_KEY)])
    assert trust.pinned_keys(BASE, "acme") is None
    assert trust.revoked_keys(BASE, "acme") == set()


def test_revocations_accumulate_per_namespace() -> None:
    trust.remember_revoked(BASE, "acme", [key_id(KEY)])
    trust.remember_revoked(BASE, "beta", [key_id(THIRD_KEY)])
    trust.remember_revoked(BASE, "acme", [key_id(OTHER_KEY)])  # KEY no longer listed
    data = tomllib.loads(constants.known_keys_file().read_text("utf-8"))
    assert data["revoked"] == {
        BASE: {
            "acme": sorted([key_id(KEY), key_id(OTHER_KEY)]),
            "beta": [key_id(THIRD_KEY)],
        }
    }


def test_a_revocation_already_known_does_not_rewrite_the_file() -> None:
    # Every download reads the keys again; one that brings nothing new must not rewrite
    # (and re-lock) the file. An atomic rewrite would give the file a new inode.
    trust.remember_revoked(BASE, "acme", [key_id(KEY)])
    before = constants.known_keys_file().stat()
    trust.remember_revoked(BASE, "acme", [key_id(KEY)])
    trust.remember_revoked(BASE, "acme", [])
    after = constants.known_keys_file().stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# -- a key given out of band (`ppatch trust NS --public-key PUB`) ----------------------------


def test_a_public_key_file_is_pinned_under_its_own_id(tmp_path: Path) -> None:
    path = tmp_path / "acme.pub"
    path.write_bytes(public_key_to_pem(KEY))
    assert trust.trust_public_key_file(BASE, "acme", path) == key_id(KEY)
    assert trust.pinned_keys(BASE, "acme") == {key_id(KEY): pem(KEY)}


def test_a_missing_public_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing.pub"
    with pytest.raises(NotFoundError) as caught:
        trust.trust_public_key_file(BASE, "acme", path)
    assert str(caught.value) == f"public key file {str(path)!r} does not exist"
    assert not constants.known_keys_file().exists()


def test_an_unreadable_public_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError) as os_error:
        tmp_path.read_bytes()  # a folder: what the operating system says about reading it
    with pytest.raises(UsageError) as caught:
        trust.trust_public_key_file(BASE, "acme", tmp_path)
    assert str(caught.value) == f"cannot read public key {str(tmp_path)!r}: {os_error.value}"
    assert not constants.known_keys_file().exists()


def _ec_public_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (private_key_to_pem(KEY),
         "public key: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', ed25519, "
         "as written by 'ppatch keygen')"),
        (_ec_public_pem(), "public key: is a ECPublicKey; ppatch verifies ed25519 keys"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_an_ed25519_public_key_is_refused(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "acme.pub"
    path.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        trust.trust_public_key_file(BASE, "acme", path)
    assert str(caught.value) == f"{str(path)!r} is not an Ed25519 public key in PEM: {reason}"
    assert not constants.known_keys_file().exists()
