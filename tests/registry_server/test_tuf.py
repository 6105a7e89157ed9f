"""The signed index: TUF metadata made by the registry, checked by python-tuf's own client.

Each test drives `tuf.ngclient.Updater` (the reference client) against the registry app, through
a fetcher that can also replay or rewrite answers as a hostile mirror would, so the attacks
named by the TUF specification are played against the real metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tuf.api import exceptions
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from registry_server import tuf_repo
from tests.registry_server.conftest import FP_A, Harness

LIFETIMES = tuf_repo.Lifetimes()
TARGET = f"packages/acme/toxicity/1.0.0/{FP_A.removeprefix('sha256:')}.ppatch"


class AppFetcher(FetcherInterface):
    """Fetches from the registry app; `overrides` maps a path to the bytes a mirror serves."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.overrides: dict[str, bytes | Callable[[bytes], bytes]] = {}
        self.requests: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = "/" + url.split("/", 3)[3]
        self.requests.append(path)
        override = self.overrides.get(path)
        if isinstance(override, bytes):
            return iter([override])
        response = self.harness.client.get(path)
        if response.status_code != 200:
            raise exceptions.DownloadHTTPError(response.text, response.status_code)
        body = response.content
        return iter([override(body) if override else body])


class Signed:
    """A registry with a signed index, its offline root keys, and a TUF client of it."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self.harness = harness
        self.root_signers = [tuf_repo.generate_signer() for _ in range(3)]
        online = tuf_repo.generate_signer()
        tuf_repo.write_signer(harness.settings.resolved_tuf_online_key, online)
        self.online = online
        with harness.session() as session:
            tuf_repo.initial_root(session, self.root_signers, 2, online.public_key, LIFETIMES)
        self.fetcher = AppFetcher(harness)
        self.client_dir = tmp_path / "tuf-client"
        self.client_dir.mkdir()
        self.bootstrap = harness.client.get("/tuf/1.root.json").content

    def updater(self) -> Updater:
        return Updater(
            str(self.client_dir),
            "http://registry.test/tuf/",
            fetcher=self.fetcher,
            bootstrap=self.bootstrap,
        )

    def refreshed(self) -> Updater:
        updater = self.updater()
        updater.refresh()
        return updater

    def get(self, path: str) -> bytes:
        response = self.harness.client.get(path)
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only here, for the suite's time: the metadata is the same on either database.
    tests/registry_server/test_tuf_backends.py runs the storage of versions on both."""
    import shutil

    path = tmp_path / "registry.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def signed(acme: Harness, tmp_path: Path) -> Signed:
    return Signed(acme, tmp_path)


def custom(updater: Updater, path: str) -> dict[str, Any]:
    info = updater.get_targetinfo(path)
    assert info is not None, path
    value: dict[str, Any] = info.custom
    return value


def test_without_tuf_init_the_endpoints_say_so(acme: Harness) -> None:
    response = acme.client.get("/tuf/timestamp.json")
    assert response.status_code == 404
    assert "tuf init" in response.json()["error"]["message"]


def test_every_release_its_length_hash_and_yank_state_are_signed(
    signed: Signed, make_patch: Callable[..., bytes]
) -> None:
    data = make_patch()
    assert signed.harness.upload(data).status_code == 201
    info = signed.refreshed().get_targetinfo(TARGET)
    assert info is not None
    assert info.length == len(data)
    assert info.hashes == {"sha256": hashlib.sha256(data).hexdigest()}
    assert info.custom["version"] == "1.0.0" and info.custom["yanked"] is False
    response = signed.harness.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "broke refusals"},
        headers=signed.harness.auth(scope="yank"),
    )
    assert response.status_code == 200, response.text
    yanked = custom(signed.refreshed(), TARGET)
    assert (yanked["yanked"], yanked["yanked_reason"]) == (True, "broke refusals")


def test_namespace_keys_and_revocations_are_signed(signed: Signed) -> None:
    from registry_server import admin

    keys = custom(signed.refreshed(), "keys/acme.json")["keys"]
    assert [key["active"] for key in keys] == [True]
    with signed.harness.session() as session:
        admin.revoke_key(session, "acme", keys[0]["key_id"], admin.CLI_ACTOR)
        session.commit()
    after = custom(signed.refreshed(), "keys/acme.json")["keys"]
    assert [(key["key_id"], key["active"]) for key in after] == [(keys[0]["key_id"], False)]


def test_unchanged_metadata_is_not_signed_again(signed: Signed) -> None:
    first = signed.get("/tuf/timestamp.json")
    assert signed.get("/tuf/timestamp.json") == first
    assert json.loads(first)["signed"]["version"] == 1


def test_arbitrary_installation_a_tampered_targets_is_refused(
    signed: Signed, make_patch: Callable[..., bytes]
) -> None:
    data = make_patch()
    signed.harness.upload(data)
    real = hashlib.sha256(data).hexdigest().encode()
    # The same length, another file's hash: the snapshot's hash of targets no longer matches.
    signed.fetcher.overrides["/tuf/1.targets.json"] = lambda body: body.replace(real, b"0" * 64)
    with pytest.raises(exceptions.LengthOrHashMismatchError):
        signed.refreshed()


def test_rollback_an_older_timestamp_is_refused(
    signed: Signed, make_patch: Callable[..., bytes]
) -> None:
    old = signed.get("/tuf/timestamp.json")
    signed.harness.upload(make_patch())
    signed.refreshed()  # the client has seen the newer index
    signed.fetcher.overrides["/tuf/timestamp.json"] = old
    with pytest.raises(exceptions.BadVersionNumberError):
        signed.refreshed()


def test_indefinite_freeze_an_expired_timestamp_is_refused(signed: Signed) -> None:
    past = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    with signed.harness.session() as session:
        frozen = tuf_repo.current_metadata(session, signed.online, LIFETIMES, now=past).body
    signed.fetcher.overrides["/tuf/timestamp.json"] = frozen.encode()
    with pytest.raises(exceptions.ExpiredMetadataError):
        signed.refreshed()
    # The server itself never serves it: past half its life, a new timestamp is signed.
    served = json.loads(signed.get("/tuf/timestamp.json"))["signed"]
    assert served["version"] == 2


def test_mix_and_match_a_snapshot_of_another_version_is_refused(
    signed: Signed, make_patch: Callable[..., bytes]
) -> None:
    first_snapshot = signed.get("/tuf/timestamp.json") and signed.get("/tuf/1.snapshot.json")
    signed.harness.upload(make_patch())
    signed.get("/tuf/timestamp.json")
    signed.fetcher.overrides["/tuf/2.snapshot.json"] = first_snapshot
    with pytest.raises(exceptions.RepositoryError):
        signed.refreshed()


def test_endless_data_a_huge_timestamp_is_cut_off(signed: Signed) -> None:
    signed.fetcher.overrides["/tuf/timestamp.json"] = b" " * (10 * 1024 * 1024)
    with pytest.raises(exceptions.DownloadLengthMismatchError):
        signed.refreshed()


def test_root_rotation_is_followed_and_needs_both_thresholds(signed: Signed) -> None:
    signed.refreshed()  # a client trusting root version 1
    new = [tuf_repo.generate_signer() for _ in range(2)]
    with signed.harness.session() as session:
        # Key compromise below the threshold: one old root key cannot make a new root.
        with pytest.raises(tuf_repo.RegistryError, match="threshold"):
            tuf_repo.next_root(
                session, signed.root_signers[:1], new, 2, signed.online.public_key, LIFETIMES
            )
        tuf_repo.next_root(
            session, signed.root_signers[:2], new, 2, signed.online.public_key, LIFETIMES
        )
    signed.refreshed()
    trusted = json.loads((signed.client_dir / "root.json").read_bytes())["signed"]
    assert trusted["version"] == 2
    assert set(trusted["roles"]["root"]["keyids"]) == {s.public_key.keyid for s in new}


def test_a_root_signed_below_threshold_is_refused_by_the_client(signed: Signed) -> None:
    signed.refreshed()
    from tuf.api.metadata import Metadata

    forged: Metadata[Any] = Metadata.from_bytes(signed.get("/tuf/1.root.json"))
    forged.signed.version = 2
    forged.signatures.clear()
    forged.sign(signed.root_signers[0])  # one stolen root key of the two needed
    signed.fetcher.overrides["/tuf/2.root.json"] = forged.to_bytes()
    with pytest.raises(exceptions.UnsignedMetadataError):
        signed.refreshed()


def test_fast_forward_recovery_new_online_keys_reset_the_versions(signed: Signed) -> None:
    """A stolen online key can sign a timestamp of a huge version (fast-forward). The operator
    rotates the online key in a new root; the client then discards the timestamp it trusted
    (TUF 5.3.11), so the registry's real, lower versions are accepted again."""
    signed.refreshed()
    stolen = signed.online
    from tuf.api.metadata import Metadata

    ahead: Metadata[Any] = Metadata.from_bytes(signed.get("/tuf/timestamp.json"))
    ahead.signed.version = 10**6
    ahead.signatures.clear()
    ahead.sign(stolen)
    signed.fetcher.overrides["/tuf/timestamp.json"] = ahead.to_bytes()
    signed.refreshed()  # the client now trusts version 10**6
    del signed.fetcher.overrides["/tuf/timestamp.json"]
    with pytest.raises(exceptions.BadVersionNumberError):
        signed.refreshed()  # the real timestamp looks like a rollback
    fresh = tuf_repo.generate_signer()
    with signed.harness.session() as session:
        tuf_repo.next_root(
            session, signed.root_signers[:2], signed.root_signers, 2, fresh.public_key, LIFETIMES
        )
    path = signed.harness.settings.resolved_tuf_online_key
    path.unlink()
    tuf_repo.write_signer(path, fresh)
    from registry_server.api.routes import tuf as tuf_routes

    tuf_routes._signer.cache_clear()
    signed.refreshed()
    assert json.loads((signed.client_dir / "timestamp.json").read_bytes())["signed"]["version"] < 10


def test_export_is_a_complete_static_mirror(
    signed: Signed, make_patch: Callable[..., bytes], tmp_path: Path
) -> None:
    from registry_server import cli

    data = make_patch()
    signed.harness.upload(data)
    settings = signed.harness.settings
    out = tmp_path / "export"
    import os

    env = {
        "PPATCH_REGISTRY_HOME": str(settings.home),
        "PPATCH_REGISTRY_DATABASE_URL": settings.resolved_database_url,
        "PPATCH_REGISTRY_STORAGE": settings.resolved_storage,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        assert cli.main(["export", str(out)]) == 0
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    digest = hashlib.sha256(data).hexdigest()
    assert (out / "blobs" / "sha256" / digest).read_bytes() == data
    timestamp = json.loads((out / "tuf" / "timestamp.json").read_bytes())["signed"]
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    assert (out / "tuf" / f"{snapshot_version}.snapshot.json").exists()
    assert (out / "tuf" / "1.root.json").read_bytes() == signed.get("/tuf/1.root.json")


def test_the_export_served_by_a_plain_static_server_is_a_mirror_and_tampering_is_caught(
    signed: Signed, make_patch: Callable[..., bytes], tmp_path: Path
) -> None:
    import functools
    import shutil
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from registry_server import cli
    from tests.client.http_servers import serving

    data = make_patch()
    signed.harness.upload(data)
    settings = signed.harness.settings
    out = tmp_path / "mirror"
    env = {
        "PPATCH_REGISTRY_HOME": str(settings.home),
        "PPATCH_REGISTRY_DATABASE_URL": settings.resolved_database_url,
        "PPATCH_REGISTRY_STORAGE": settings.resolved_storage,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert cli.main(["export", str(out)]) == 0

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(out))
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as port:
        mirror = f"http://127.0.0.1:{port}"

        def updater(folder: str) -> Updater:
            (tmp_path / folder).mkdir()
            return Updater(str(tmp_path / folder), f"{mirror}/tuf/", bootstrap=signed.bootstrap)

        # python-tuf's own HTTP fetcher (urllib3) against the static files.
        client = updater("clean")
        info = client.get_targetinfo(TARGET)
        assert info is not None
        blob = (out / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).read_bytes()
        info.verify_length_and_hashes(blob)

        # Tampering on the mirror: another file's bytes under the blob's name are caught by
        # the signed length and hash ...
        with pytest.raises(exceptions.LengthOrHashMismatchError):
            info.verify_length_and_hashes(make_patch(seed=5))
        # ... and an edited targets file by the snapshot's hash of it.
        [targets_file] = sorted((out / "tuf").glob("*.targets.json"))[-1:]
        original = targets_file.read_bytes()
        targets_file.write_bytes(original.replace(b'"1.0.0"', b'"9.0.0"'))
        with pytest.raises(exceptions.LengthOrHashMismatchError):
            updater("tampered").refresh()
        targets_file.write_bytes(original)
        shutil.rmtree(out / "tuf")  # a mirror that lost its metadata serves nothing trusted
        with pytest.raises(exceptions.DownloadError):
            updater("emptied").refresh()
