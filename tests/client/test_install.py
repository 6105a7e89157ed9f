"""`ppatch.install` without a server: each stage against an in-process registry (httpx's
MockTransport) and a stand-in for the signed index, with the expected answers written out.

The end-to-end runs of the same stages against a real `ppatch-registry serve` are in
tests/client/cli/test_registry_commands.py; these are the fast checks of every decision.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from patchfmt import FingerprintMismatchError, PackageSpec, key_id, public_key_to_pem
from ppatch import install, store, verbosity
from ppatch.errors import NotFoundError, UsageError, VerificationError
from ppatch.install import (
    ModelTarget,
    carry_out,
    fetch_verified,
    install_locked,
    is_yanked,
    model_target,
    parse_spec,
    record,
    resolve_spec,
    verify_blob,
)
from ppatch.install_plan import InstallAction, YankState
from ppatch.lockfile import LockEntry, Lockfile
from ppatch.registry.client import RegistryClient
from ppatch.registry.errors import DownloadTooLargeError
from ppatch.registry.signed_index import ArtifactInfo
from ppatch.resolver import NoArtifactError, NoMatchingVersionError, Pin, UnknownPackageError
from tests.client.conftest import build_patch, stored_files, write_tiny_model

BASE = "http://registry.test"
MODEL = "sha256:" + "1" * 64
OTHER_MODEL = "sha256:" + "2" * 64
KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keys_body(namespace: str = "acme") -> dict[str, Any]:
    return {
        "namespace": namespace,
        "keys": [
            {"key_id": key_id(KEY), "public_key": public_key_to_pem(KEY).decode(), "active": True}
        ],
    }


def artifact(data: bytes, fingerprint: str = MODEL, **extra: Any) -> dict[str, Any]:
    digest = sha256(data)
    return {
        "fingerprint": fingerprint,
        "sha256": digest,
        "size": len(data),
        "url": f"/blobs/sha256/{digest}",
        "key_id": key_id(KEY),
    } | extra


def release(version: str, *artifacts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    plain = {"version": version, "yanked": False, "yanked_reason": None}
    return plain | {"artifacts": list(artifacts)} | extra


def package(namespace: str, name: str, *releases: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "releases": list(releases)}


class FakeRegistry:
    """Package indexes, search answers, keys and blobs; records every request it is sent."""

    def __init__(self) -> None:
        self.indexes: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        self.keys: dict[str, dict[str, Any]] = {"acme": keys_body()}
        self.searches: list[dict[str, str]] = []
        self.search_results: dict[str, list[dict[str, Any]]] = {}
        self.paths: list[str] = []

    def add_blob(self, data: bytes) -> str:
        self.blobs[sha256(data)] = data
        return sha256(data)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        if path == "/api/v1/search":
            params = dict(parse_qsl(request.url.query.decode()))
            self.searches.append(params)
            key = params.get("name") or params.get("q") or f"limit={params.get('limit')}"
            return httpx.Response(200, json={"results": self.search_results.get(key, [])})
        if path.startswith("/api/v1/packages/"):
            full = path.removeprefix("/api/v1/packages/")
            if full in self.indexes:
                return httpx.Response(200, json=self.indexes[full])
        if path.startswith("/api/v1/namespaces/") and path.endswith("/keys"):
            namespace = path.split("/")[4]
            if namespace in self.keys:
                return httpx.Response(200, json=self.keys[namespace])
        if path.startswith("/blobs/sha256/"):
            digest = path.rsplit("/", 1)[-1]
            if digest in self.blobs:
                return httpx.Response(200, content=self.blobs[digest])
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such"}})


def client_of(fake: FakeRegistry) -> RegistryClient:
    return RegistryClient(BASE, transport=httpx.MockTransport(fake), retries=0)


class FakeSigned:
    """What `ppatch.install` reads of a registry's signed index."""

    def __init__(
        self,
        indexes: dict[str, dict[str, Any]] | None = None,
        artifacts: dict[tuple[str, str, str, str], ArtifactInfo] | None = None,
        keys: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.base_url = BASE
        self.indexes = indexes or {}
        self.artifacts = artifacts or {}
        self.keys = keys or {}

    def package_index(self, namespace: str, name: str) -> dict[str, Any]:
        return self.indexes.get(f"{namespace}/{name}", package(namespace, name))

    def artifact(self, namespace: str, name: str, version: str, fingerprint: str) -> ArtifactInfo:
        return self.artifacts[(namespace, name, version, fingerprint)]

    def namespace_keys(self, namespace: str) -> dict[str, Any]:
        return self.keys[namespace]


def pin_of(data: bytes, name: str = "toxicity", version: str = "1.0.0", **extra: Any) -> Pin:
    digest = sha256(data)
    fields = {
        "namespace": "acme",
        "name": name,
        "version": version,
        "fingerprint": MODEL,
        "sha256": digest,
        "size": len(data),
        "url": f"/blobs/sha256/{digest}",
        "filename": f"{name}-{version}.ppatch",
    } | extra
    return Pin(**fields)


PATCH_1_0 = build_patch("acme/toxicity", "1.0.0", MODEL, KEY)
PATCH_1_1 = build_patch("acme/toxicity", "1.1.0", MODEL, KEY, seed=1)
BIAS = build_patch("acme/bias", "0.1.0", MODEL, KEY, seed=2)


# -- model_target and parse_spec ------------------------------------------------------------------


def test_model_target_is_the_resolved_folder_and_its_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from patchfmt import fingerprint_model

    folder = write_tiny_model(tmp_path / "tiny", seed=3)
    expected = fingerprint_model(folder, cache_dir=tmp_path / "separate-cache")
    bars: list[tuple[str, float | None, str]] = []
    advanced: list[float] = []

    @contextmanager
    def recording(description: str, total: float | None, *, unit: str = ""):  # type: ignore[no-untyped-def]
        bars.append((description, total, unit))
        yield advanced.append

    monkeypatch.setattr(install, "deferred_progress", recording)
    verbosity.set_level(1)
    try:
        target = model_target(str(tmp_path / "tiny" / ".." / "tiny"))
    finally:
        verbosity.set_level(0)
    assert target == ModelTarget(path=folder.resolve(), fingerprint=expected)
    assert bars == [("fingerprinting tiny", None, "bytes")]
    # The bar moves by the tensor bytes hashed: two float32 tensors of 16 x 8.
    assert sum(advanced) == 2 * 16 * 8 * 4
    assert (
        capsys.readouterr().err == f"ppatch: model {folder.resolve()} has fingerprint {expected}\n"
    )


def test_parse_spec_and_its_usage_error() -> None:
    assert parse_spec("acme/toxicity@^1.2") == PackageSpec.parse("acme/toxicity@^1.2")
    with pytest.raises(UsageError) as caught:
        parse_spec("a/b/c")
    assert str(caught.value) == "invalid package spec 'a/b/c': expected '[namespace/]name[@range]'"


# -- resolve_spec ---------------------------------------------------------------------------------


def test_a_namespaced_spec_reads_its_own_index_and_nothing_else() -> None:
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = package(
        "acme",
        "toxicity",
        release("1.0.0", artifact(PATCH_1_0)),
        release("1.1.0", artifact(PATCH_1_1)),
    )
    with client_of(fake) as client:
        resolution = resolve_spec(client, PackageSpec.parse("acme/toxicity@1.0"), MODEL)
    assert resolution.pin == Pin(
        "acme", "toxicity", "1.0.0", MODEL, sha256(PATCH_1_0), len(PATCH_1_0),
        f"/blobs/sha256/{sha256(PATCH_1_0)}", "toxicity-1.0.0.ppatch", key_id(KEY),
    )  # fmt: skip
    assert fake.paths == ["/api/v1/packages/acme/toxicity"]
    assert fake.searches == []


def test_an_unknown_namespaced_package_is_suggested_from_a_search_of_its_name() -> None:
    fake = FakeRegistry()
    fake.search_results["toxicty"] = [
        {"namespace": "acme", "name": "toxicity"},
        {"name": "no-namespace"},  # not a package name: skipped
    ]
    with client_of(fake) as client, pytest.raises(UnknownPackageError) as caught:
        resolve_spec(client, PackageSpec.parse("acme/toxicty"), MODEL)
    assert caught.value.suggestions == ["acme/toxicity"]
    assert fake.searches == [{"q": "toxicty"}]


def test_when_the_name_finds_nothing_the_suggestions_come_from_a_pool() -> None:
    fake = FakeRegistry()
    fake.search_results["limit=200"] = [
        {"namespace": "acme", "name": "toxicity"},
        {"namespace": "acme", "name": "bias"},
    ]
    with client_of(fake) as client, pytest.raises(UnknownPackageError) as caught:
        resolve_spec(client, PackageSpec.parse("toxicty"), MODEL)
    assert caught.value.suggestions == ["acme/toxicity"]
    # The name search of a bare spec, the text search, then the pool of 200.
    assert fake.searches == [{"name": "toxicty"}, {"q": "toxicty"}, {"limit": "200"}]
    assert install.SUGGESTION_POOL == 200


def test_a_bare_name_reads_the_index_of_each_namespace_that_has_it() -> None:
    fake = FakeRegistry()
    other_model = build_patch("acme/toxicity", "3.0.0", OTHER_MODEL, KEY)
    zeta = build_patch("zeta/toxicity", "0.5.0", MODEL, KEY)
    fake.indexes["acme/toxicity"] = package(
        "acme", "toxicity", release("3.0.0", artifact(other_model, OTHER_MODEL))
    )
    fake.indexes["zeta/toxicity"] = package("zeta", "toxicity", release("0.5.0", artifact(zeta)))
    fake.search_results["toxicity"] = [
        {"namespace": "acme", "name": "toxicity"},
        {"namespace": "acme", "name": "toxicity-extra"},  # another name: not read
        {"namespace": "gone", "name": "toxicity"},  # 404: skipped, the others still read
        {"namespace": "zeta", "name": "toxicity"},
    ]
    with client_of(fake) as client:
        resolution = resolve_spec(client, PackageSpec.parse("toxicity"), MODEL)
    assert (resolution.pin.full_name, resolution.pin.version) == ("zeta/toxicity", "0.5.0")
    assert fake.paths == [
        "/api/v1/search",
        "/api/v1/packages/acme/toxicity",
        "/api/v1/packages/gone/toxicity",
        "/api/v1/packages/zeta/toxicity",
    ]
    assert fake.searches == [{"name": "toxicity"}]  # found: no suggestion search


def test_resolve_spec_passes_pre_releases_on() -> None:
    fake = FakeRegistry()
    rc = build_patch("acme/toxicity", "2.0.0-rc.1", MODEL, KEY)
    fake.indexes["acme/toxicity"] = package("acme", "toxicity", release("2.0.0-rc.1", artifact(rc)))
    spec = PackageSpec.parse("acme/toxicity")
    with client_of(fake) as client:
        assert resolve_spec(client, spec, MODEL, allow_prerelease=True).pin.version == "2.0.0-rc.1"
        with pytest.raises(NoMatchingVersionError):
            resolve_spec(client, spec, MODEL)


# -- the signed confirmation ----------------------------------------------------------------------


def _one_release_registry(data: bytes = PATCH_1_0, **extra: Any) -> FakeRegistry:
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = package(
        "acme", "toxicity", release("1.0.0", artifact(data), **extra)
    )
    return fake


def test_a_confirmed_resolution_takes_the_signed_yank_and_key() -> None:
    signed = FakeSigned(
        {
            "acme/toxicity": package(
                "acme",
                "toxicity",
                release(
                    "1.0.0",
                    artifact(PATCH_1_0, key_id="signed-key"),
                    yanked=True,
                    yanked_reason="leaks",
                ),
            )
        }
    )
    with client_of(_one_release_registry()) as client:
        resolution = resolve_spec(
            client, PackageSpec.parse("acme/toxicity@1.0.0"), MODEL, signed=signed
        )  # type: ignore[arg-type]
    pin = resolution.pin
    assert (pin.yanked, pin.yanked_reason, pin.key_id) == (True, "leaks", "signed-key")
    assert (pin.version, pin.sha256, pin.size) == ("1.0.0", sha256(PATCH_1_0), len(PATCH_1_0))
    assert resolution.warnings == ("acme/toxicity 1.0.0 is yanked: leaks",)


def test_an_answer_the_signed_index_contradicts_is_refused() -> None:
    other = build_patch("acme/toxicity", "1.0.0", MODEL, KEY, seed=9)
    signed = FakeSigned(
        {"acme/toxicity": package("acme", "toxicity", release("1.0.0", artifact(other)))}
    )
    with client_of(_one_release_registry()) as client, pytest.raises(VerificationError) as caught:
        resolve_spec(client, PackageSpec.parse("acme/toxicity"), MODEL, signed=signed)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"the registry's index gives acme/toxicity 1.0.0 the artifact sha256 {sha256(PATCH_1_0)} "
        f"({len(PATCH_1_0)} bytes) but its signed index has sha256 {sha256(other)} "
        f"({len(other)} bytes): a substituted artifact"
    )


def test_a_release_the_signed_index_lacks_is_refused() -> None:
    with client_of(_one_release_registry()) as client, pytest.raises(VerificationError) as caught:
        resolve_spec(client, PackageSpec.parse("acme/toxicity"), MODEL, signed=FakeSigned())  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"acme/toxicity 1.0.0 for {MODEL} is not in the signed index of {BASE}: the registry "
        "answered about a release it never signed"
    )


def test_the_signed_resolution_allows_pre_releases_when_asked() -> None:
    rc = build_patch("acme/toxicity", "2.0.0-rc.1", MODEL, KEY)
    index = package("acme", "toxicity", release("2.0.0-rc.1", artifact(rc)))
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = index
    signed = FakeSigned({"acme/toxicity": index})
    with client_of(fake) as client:
        resolution = resolve_spec(
            client,
            PackageSpec.parse("acme/toxicity"),
            MODEL,
            allow_prerelease=True,
            signed=signed,  # type: ignore[arg-type]
        )
    assert resolution.pin.version == "2.0.0-rc.1"


# -- is_yanked ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"), [("1.0.0", True), ("1.1.0", False), ("9.9.9", False)]
)
def test_is_yanked_reads_the_installed_version(version: str, expected: bool) -> None:
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = package(
        "acme",
        "toxicity",
        release("1.1.0", artifact(PATCH_1_1)),
        release("1.0.0", artifact(PATCH_1_0), yanked=True, yanked_reason="bad"),
    )
    patch = store.InstalledPatch("acme/toxicity", version, "a" * 64)
    with client_of(fake) as client:
        assert is_yanked(client, patch) is expected


def test_is_yanked_of_an_index_without_releases_is_false() -> None:
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = {"namespace": "acme", "name": "toxicity"}
    with client_of(fake) as client:
        assert is_yanked(client, store.InstalledPatch("acme/toxicity", "1.0.0", "a" * 64)) is False


def test_is_yanked_believes_the_signed_index_over_the_answer() -> None:
    fake = _one_release_registry()  # unsigned: not yanked
    signed = FakeSigned(
        {
            "acme/toxicity": package(
                "acme", "toxicity", release("1.0.0", artifact(PATCH_1_0), yanked=True)
            )
        }
    )
    patch = store.InstalledPatch("acme/toxicity", "1.0.0", "a" * 64)
    with client_of(fake) as client:
        assert is_yanked(client, patch, signed) is True  # type: ignore[arg-type]
        assert is_yanked(client, patch) is False
    assert fake.paths == ["/api/v1/packages/acme/toxicity"]  # the signed check asked nothing


# -- verify_blob and fetch_verified ---------------------------------------------------------------


def test_verify_blob_checks_digest_format_and_model(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(PATCH_1_0)
    assert verify_blob(path, sha256(PATCH_1_0), MODEL).manifest.name == "acme/toxicity"
    with pytest.raises(FingerprintMismatchError):
        verify_blob(path, sha256(PATCH_1_0), OTHER_MODEL)
    path.write_bytes(PATCH_1_1)
    with pytest.raises(VerificationError) as caught:
        verify_blob(path, sha256(PATCH_1_0), MODEL)
    assert str(caught.value) == (
        f"{str(path)!r} has sha256 {sha256(PATCH_1_1)}, expected {sha256(PATCH_1_0)}; "
        "the file was changed"
    )


def test_a_download_is_verified_stored_and_shown_with_its_name_and_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    bars: list[tuple[str, float | None, str]] = []
    advanced: list[float] = []

    @contextmanager
    def recording(description: str, total: float | None, *, unit: str = ""):  # type: ignore[no-untyped-def]
        bars.append((description, total, unit))
        yield advanced.append

    monkeypatch.setattr(install, "progress", recording)
    with client_of(fake) as client:
        path = fetch_verified(client, pin_of(PATCH_1_0), MODEL)
    assert path == store.blob_path(sha256(PATCH_1_0))
    assert path.read_bytes() == PATCH_1_0
    assert bars == [("acme/toxicity 1.0.0", len(PATCH_1_0), "bytes")]
    assert sum(advanced) == len(PATCH_1_0)


def test_a_cached_blob_is_used_without_the_network() -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client:
        fetch_verified(client, pin_of(PATCH_1_0), MODEL)
        requests = len(fake.paths)
        assert fetch_verified(client, pin_of(PATCH_1_0), MODEL).read_bytes() == PATCH_1_0
        assert len(fake.paths) == requests
    assert fetch_verified(None, pin_of(PATCH_1_0), MODEL).read_bytes() == PATCH_1_0


def test_a_cached_blob_for_another_release_is_refused_offline() -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client:
        fetch_verified(client, pin_of(PATCH_1_0), MODEL)
    # The same bytes, pinned as another version: the identity check refuses the cached file.
    with pytest.raises(VerificationError, match=r"^downloaded file is acme/toxicity 1\.0\.0, but"):
        fetch_verified(None, pin_of(PATCH_1_0, version="1.0.1"), MODEL)


def test_nothing_cached_and_no_registry() -> None:
    pin = pin_of(PATCH_1_0)
    with pytest.raises(NotFoundError) as caught:
        fetch_verified(None, pin, MODEL)
    assert str(caught.value) == (
        f"acme/toxicity 1.0.0 (sha256 {pin.sha256}) is not in the local cache and no registry "
        "is available"
    )


@pytest.mark.parametrize(
    ("served", "pin_name", "pin_version", "message"),
    [
        (build_patch("acme/toxicity", "1.0.1", MODEL, KEY), "toxicity", "1.0.0",
         "downloaded file is acme/toxicity 1.0.1, but the index promised acme/toxicity 1.0.0"),
        (build_patch("acme/bias", "1.0.0", MODEL, KEY), "toxicity", "1.0.0",
         "downloaded file is acme/bias 1.0.0, but the index promised acme/toxicity 1.0.0"),
        (build_patch("acme/toxicity", "1.0.0", MODEL, None), "toxicity", "1.0.0",
         "acme/toxicity 1.0.0 is not signed"),
    ],
)  # fmt: skip
def test_a_download_that_is_not_what_the_index_promised(
    served: bytes, pin_name: str, pin_version: str, message: str
) -> None:
    fake = FakeRegistry()
    fake.add_blob(served)
    with client_of(fake) as client, pytest.raises(VerificationError) as caught:
        fetch_verified(client, pin_of(served, pin_name, pin_version), MODEL)
    assert str(caught.value) == message
    assert stored_files() == []


def test_a_download_with_another_digest_or_length_is_refused() -> None:
    fake = FakeRegistry()
    digest = sha256(PATCH_1_0)
    fake.blobs[digest] = PATCH_1_1  # the index's digest, another file's bytes
    pin = pin_of(PATCH_1_0, size=len(PATCH_1_1))
    with client_of(fake) as client, pytest.raises(VerificationError) as caught:
        fetch_verified(client, pin, MODEL)
    assert str(caught.value) == (
        f"download of acme/toxicity 1.0.0 does not match the index: sha256 {sha256(PATCH_1_1)} "
        f"({len(PATCH_1_1)} bytes), expected {digest} ({len(PATCH_1_1)} bytes)"
    )
    # The right bytes, but the index gives one byte more: the length alone is refused.
    fake.blobs[digest] = PATCH_1_0
    longer = pin_of(PATCH_1_0, size=len(PATCH_1_0) + 1)
    with client_of(fake) as client, pytest.raises(VerificationError) as caught:
        fetch_verified(client, longer, MODEL)
    assert str(caught.value) == (
        f"download of acme/toxicity 1.0.0 does not match the index: sha256 {digest} "
        f"({len(PATCH_1_0)} bytes), expected {digest} ({len(PATCH_1_0) + 1} bytes)"
    )
    assert stored_files() == []


def test_a_download_longer_than_the_index_says_stops_there() -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    shorter = pin_of(PATCH_1_0, size=len(PATCH_1_0) - 1)
    with client_of(fake) as client, pytest.raises(DownloadTooLargeError):
        fetch_verified(client, shorter, MODEL)
    assert stored_files() == []


def test_the_signature_is_checked_with_the_keys_of_the_signed_index() -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    fake.keys.clear()  # the unsigned keys endpoint answers 404
    signed = FakeSigned(keys={"acme": keys_body()})
    with client_of(fake) as client:
        path = fetch_verified(client, pin_of(PATCH_1_0), MODEL, signed)  # type: ignore[arg-type]
    assert path.read_bytes() == PATCH_1_0


def test_a_download_for_another_model_is_refused() -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client, pytest.raises(FingerprintMismatchError):
        fetch_verified(client, pin_of(PATCH_1_0, fingerprint=OTHER_MODEL), OTHER_MODEL)
    assert stored_files() == []


# -- record and carry_out -------------------------------------------------------------------------


def test_record_adds_and_replaces_under_the_model(tmp_path: Path) -> None:
    target = ModelTarget(tmp_path / "model", MODEL)
    first = store.InstalledPatch("acme/toxicity", "1.0.0", "a" * 64, 10)
    seen: list[list[str]] = []
    record(target, [first])
    state = record(
        target,
        [store.InstalledPatch("acme/bias", "0.1.0", "b" * 64), replace_version(first, "1.1.0")],
        before_write=lambda s: seen.append([f"{p.name} {p.version}" for p in s.patches]),
    )
    assert seen == [["acme/toxicity 1.1.0", "acme/bias 0.1.0"]]
    again = store.read_installed(MODEL)
    assert again == state
    assert again.model == str(tmp_path / "model")
    assert [(p.name, p.version) for p in again.patches] == [
        ("acme/toxicity", "1.1.0"),
        ("acme/bias", "0.1.0"),
    ]


def replace_version(patch: store.InstalledPatch, version: str) -> store.InstalledPatch:
    from dataclasses import replace

    return replace(patch, version=version)


def test_record_writes_nothing_when_before_write_refuses(tmp_path: Path) -> None:
    target = ModelTarget(tmp_path / "model", MODEL)

    def refuse(_state: store.InstalledSet) -> None:
        raise UsageError("no")

    with pytest.raises(UsageError):
        record(
            target, [store.InstalledPatch("acme/toxicity", "1.0.0", "a" * 64)], before_write=refuse
        )
    assert store.read_installed(MODEL).patches == []


def _action(data: bytes, name: str = "toxicity", version: str = "1.0.0") -> InstallAction:
    pin = pin_of(data, name, version)
    return InstallAction(pin.full_name, version, "install", pin)


def test_carry_out_records_every_change_once_all_are_verified(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    fake.add_blob(BIAS)
    target = ModelTarget(tmp_path / "model", MODEL)
    actions = [
        _action(PATCH_1_0),
        InstallAction("acme/harm", "1.0.0", "unchanged"),
        _action(BIAS, "bias", "0.1.0"),
    ]
    with client_of(fake) as client:
        carry_out(client, target, actions, "http://named.test")
    state = store.read_installed(MODEL)
    assert state.patches == [
        store.InstalledPatch("acme/toxicity", "1.0.0", sha256(PATCH_1_0), len(PATCH_1_0),
                             "http://named.test", f"/blobs/sha256/{sha256(PATCH_1_0)}",
                             "toxicity-1.0.0.ppatch"),
        store.InstalledPatch("acme/bias", "0.1.0", sha256(BIAS), len(BIAS), "http://named.test",
                             f"/blobs/sha256/{sha256(BIAS)}", "bias-0.1.0.ppatch"),
    ]  # fmt: skip


def test_carry_out_records_nothing_when_one_download_fails(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)  # BIAS is missing: 404
    target = ModelTarget(tmp_path / "model", MODEL)
    with client_of(fake) as client, pytest.raises(NotFoundError):
        carry_out(client, target, [_action(PATCH_1_0), _action(BIAS, "bias", "0.1.0")], None)
    assert store.read_installed(MODEL).patches == []
    assert not any("models" in path for path in stored_files())


def test_carry_out_with_nothing_to_change_writes_nothing(tmp_path: Path) -> None:
    target = ModelTarget(tmp_path / "model", MODEL)
    carry_out(None, target, [InstallAction("acme/harm", "1.0.0", "unchanged")], None)
    assert stored_files() == []


def test_carry_out_downloads_with_the_signed_index_keys(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    fake.keys.clear()
    signed = FakeSigned(keys={"acme": keys_body()})
    with client_of(fake) as client:
        carry_out(client, ModelTarget(tmp_path / "m", MODEL), [_action(PATCH_1_0)], None, signed)  # type: ignore[arg-type]
    assert [p.name for p in store.read_installed(MODEL).patches] == ["acme/toxicity"]


# -- install_locked -------------------------------------------------------------------------------


def entry(
    data: bytes, name: str = "acme/toxicity", version: str = "1.0.0", **extra: Any
) -> LockEntry:
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "sha256": sha256(data),
        "size": len(data),
        "registry": None,
        "url": None,
    } | extra
    return LockEntry(**fields)


class Clients:
    """Stands in for RegistryClient and the signed index inside install_locked."""

    def __init__(self, fake: FakeRegistry, signed: FakeSigned | None = None) -> None:
        self.fake, self.signed = fake, signed
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.signed_for: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import ppatch.registry.client
        import ppatch.registry.signed_index

        outer = self

        class Recording(RegistryClient):
            def __init__(self, base_url: str) -> None:
                outer.opened.append(base_url)
                super().__init__(base_url, transport=httpx.MockTransport(outer.fake), retries=0)

            def close(self) -> None:
                outer.closed.append(self.base_url)
                super().close()

        def signed_index(base_url: str) -> FakeSigned | None:
            self.signed_for.append(base_url)
            return self.signed

        monkeypatch.setattr(ppatch.registry.client, "RegistryClient", Recording)
        monkeypatch.setattr(ppatch.registry.signed_index, "refreshed_signed_index", signed_index)


def test_a_lockfile_for_another_model_is_refused(tmp_path: Path) -> None:
    target = ModelTarget(tmp_path / "model", MODEL)
    with pytest.raises(VerificationError) as caught:
        install_locked(target, Lockfile(OTHER_MODEL, (entry(PATCH_1_0),)), source="x.lock")
    assert str(caught.value) == (
        f"lockfile 'x.lock' was frozen for model {OTHER_MODEL}, but {str(tmp_path / 'model')!r} "
        f"has fingerprint {MODEL}"
    )


def test_a_lockfile_downloads_from_one_client_per_registry_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    fake.add_blob(BIAS)
    clients = Clients(fake)
    clients.install(monkeypatch)
    locked = Lockfile(
        MODEL,
        (
            entry(PATCH_1_0, registry="http://elsewhere.test"),
            entry(BIAS, "acme/bias", "0.1.0", registry="http://elsewhere.test"),
        ),
    )
    target = ModelTarget(tmp_path / "model", MODEL)
    actions = install_locked(target, locked, source="x.lock", registry=BASE)
    assert [(a.name, a.action) for a in actions] == [
        ("acme/toxicity", "install"),
        ("acme/bias", "install"),
    ]
    # The registry given overrides the entries' own; one client and one signed index for it.
    assert clients.opened == [BASE]
    assert clients.signed_for == [BASE]
    assert clients.closed == [BASE]
    assert store.read_installed(MODEL).patches == [e.as_installed() for e in locked.entries]


def test_a_lockfile_uses_each_entrys_registry_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    clients = Clients(fake)
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0, registry="http://elsewhere.test"),))
    install_locked(ModelTarget(tmp_path / "model", MODEL), locked, source="x.lock")
    assert clients.opened == ["http://elsewhere.test"]


def test_a_lockfile_from_the_cache_opens_no_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client:
        fetch_verified(client, pin_of(PATCH_1_0), MODEL)  # now in the blob cache
    clients = Clients(FakeRegistry())
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0, size=None),))  # no size needed from the cache
    install_locked(ModelTarget(tmp_path / "model", MODEL), locked, source="x.lock", registry=BASE)
    assert clients.opened == []
    assert [p.sha256 for p in store.read_installed(MODEL).patches] == [sha256(PATCH_1_0)]


def test_a_lockfile_dry_run_plans_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    clients = Clients(fake)
    clients.install(monkeypatch)
    yanked = YankState(yanked=True, reason="leaks")
    actions = install_locked(
        ModelTarget(tmp_path / "model", MODEL),
        Lockfile(MODEL, (entry(PATCH_1_0),)),
        source="x.lock",
        registry=BASE,
        dry_run=True,
        yank_state=lambda _name, _version: yanked,
    )
    assert [(a.name, a.action, a.yanked) for a in actions] == [("acme/toxicity", "install", True)]
    assert actions[0].warnings == (
        "acme/toxicity 1.0.0 is yanked: leaks; installed as the lockfile pins it",
    )
    assert stored_files() == []
    assert not any(path.startswith("/blobs/") for path in fake.paths)


def test_a_damaged_cached_blob_of_a_lockfile_is_downloaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client:
        path = fetch_verified(client, pin_of(PATCH_1_0), MODEL)
    path.write_bytes(b"bit rot")
    clients = Clients(fake)
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0),))
    install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert clients.opened == [BASE]  # the damaged entry sent it to the registry
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(PATCH_1_0).hexdigest()
    assert [p.version for p in store.read_installed(MODEL).patches] == ["1.0.0"]


def test_a_lockfile_downloads_what_follows_a_cached_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    fake.add_blob(BIAS)
    with client_of(fake) as client:
        fetch_verified(client, pin_of(PATCH_1_0), MODEL)  # cached; BIAS is not
    clients = Clients(fake)
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0), entry(BIAS, name="acme/bias", version="0.1.0")))
    install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert sorted(p.name for p in store.read_installed(MODEL).patches) == [
        "acme/bias",
        "acme/toxicity",
    ]
    blobs = sorted(Path(name).name for name in stored_files() if name.startswith("blobs/"))
    assert blobs == sorted(
        hashlib.sha256(data).hexdigest() + ".ppatch" for data in (PATCH_1_0, BIAS)
    )


def test_a_damaged_cached_blob_of_a_lockfile_is_refused_when_the_download_differs_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    with client_of(fake) as client:
        path = fetch_verified(client, pin_of(PATCH_1_0), MODEL)
    path.write_bytes(b"bit rot")
    # The registry now serves other bytes under the locked digest: the lockfile still decides.
    fake.blobs[sha256(PATCH_1_0)] = PATCH_1_1[: len(PATCH_1_0)].ljust(len(PATCH_1_0), b"\0")
    clients = Clients(fake)
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0),))
    with pytest.raises(VerificationError, match=r"does not match the index: sha256 "):
        install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert store.read_installed(MODEL).patches == []
    assert not path.exists()  # the damaged entry is gone, and nothing unverified took its place


def test_a_lockfile_entry_without_a_size_cannot_be_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = Clients(FakeRegistry())
    clients.install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0, size=None),))
    with pytest.raises(UsageError) as caught:
        install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert str(caught.value) == "lockfile entry acme/toxicity has no size; cannot verify a download"
    assert clients.closed == [BASE]  # closed on the way out
    assert stored_files() == []


def test_a_lockfile_entry_the_signed_index_contradicts_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    info = ArtifactInfo(
        length=len(PATCH_1_1), sha256=sha256(PATCH_1_1), yanked=False, yanked_reason=None
    )
    signed = FakeSigned(
        artifacts={("acme", "toxicity", "1.0.0", MODEL): info}, keys={"acme": keys_body()}
    )
    Clients(fake, signed).install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0),))
    with pytest.raises(VerificationError) as caught:
        install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert str(caught.value) == (
        f"lockfile entry acme/toxicity 1.0.0 has sha256 {sha256(PATCH_1_0)} ({len(PATCH_1_0)} "
        f"bytes) but the signed index of {BASE} has sha256 {sha256(PATCH_1_1)} "
        f"({len(PATCH_1_1)} bytes)"
    )
    assert stored_files() == []


@pytest.mark.parametrize("change", ["sha256", "length"])
def test_a_lockfile_entry_must_match_the_signed_digest_and_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)
    right = {"length": len(PATCH_1_0), "sha256": sha256(PATCH_1_0)}
    wrong = right | ({"sha256": "f" * 64} if change == "sha256" else {"length": 1})
    signed_keys = {"acme": keys_body()}
    fake.keys.clear()  # only the signed index gives the namespace's keys
    for fields, refused in ((wrong, True), (right, False)):
        info = ArtifactInfo(yanked=False, yanked_reason=None, **fields)  # type: ignore[arg-type]
        signed = FakeSigned(
            artifacts={("acme", "toxicity", "1.0.0", MODEL): info}, keys=signed_keys
        )
        Clients(fake, signed).install(monkeypatch)
        locked = Lockfile(MODEL, (entry(PATCH_1_0),))
        target = ModelTarget(tmp_path / "m", MODEL)
        if refused:
            with pytest.raises(
                VerificationError, match=r"^lockfile entry acme/toxicity 1\.0\.0 has"
            ):
                install_locked(target, locked, source="x.lock", registry=BASE)
        else:
            install_locked(target, locked, source="x.lock", registry=BASE)
    assert [p.name for p in store.read_installed(MODEL).patches] == ["acme/toxicity"]


def test_a_failed_lockfile_download_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    fake.add_blob(PATCH_1_0)  # BIAS is missing
    Clients(fake).install(monkeypatch)
    locked = Lockfile(MODEL, (entry(PATCH_1_0), entry(BIAS, "acme/bias", "0.1.0")))
    with pytest.raises(NotFoundError):
        install_locked(ModelTarget(tmp_path / "m", MODEL), locked, source="x.lock", registry=BASE)
    assert store.read_installed(MODEL).patches == []


def test_ambiguity_and_no_artifact_pass_through_resolve_spec() -> None:
    # The resolver's refusals reach the caller unchanged (exit codes follow their types).
    fake = FakeRegistry()
    fake.indexes["acme/toxicity"] = package(
        "acme", "toxicity", release("1.0.0", artifact(PATCH_1_0, OTHER_MODEL))
    )
    with client_of(fake) as client, pytest.raises(NoArtifactError):
        resolve_spec(client, PackageSpec.parse("acme/toxicity"), MODEL)
