"""Blob storage: the local directory and S3 (against moto's standalone server)."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient

from registry_server.config import Settings
from registry_server.db import create_registry_engine
from registry_server.main import create_app
from registry_server.storage import BlobNotFoundError, LocalStorage, S3Storage, open_storage

DIGEST = "ab" + "0" * 62


def _local(tmp_path: Path, _endpoint: str | None) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs")


def _s3(tmp_path: Path, endpoint: str | None) -> S3Storage:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = open_storage(f"s3://{bucket}/registry", endpoint_url=endpoint)
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(params=[_local, _s3], ids=["local", "s3"])
def storage(request, tmp_path):
    endpoint = request.getfixturevalue("moto_endpoint") if request.param is _s3 else None
    return request.param(tmp_path, endpoint)


def test_round_trip(storage, tmp_path) -> None:
    source = tmp_path / "source"
    source.write_bytes(bytes(range(256)) * 10)
    assert not storage.exists(DIGEST)
    storage.put(DIGEST, source)
    storage.put(DIGEST, source)  # idempotent
    assert storage.exists(DIGEST)
    assert storage.size(DIGEST) == 2560
    assert b"".join(storage.read(DIGEST)) == source.read_bytes()
    assert b"".join(storage.read(DIGEST, 10, 19)) == source.read_bytes()[10:20]
    assert b"".join(storage.read(DIGEST, 2550)) == source.read_bytes()[2550:]
    storage.delete(DIGEST)
    storage.delete(DIGEST)
    assert not storage.exists(DIGEST)


def test_missing_blob(storage) -> None:
    with pytest.raises(BlobNotFoundError):
        storage.size(DIGEST)
    with pytest.raises(BlobNotFoundError):
        b"".join(storage.read(DIGEST))


@pytest.mark.parametrize("digest", ["../../etc/passwd", "AB" + "0" * 62, "0" * 63, ""])
def test_digests_never_become_paths(storage, digest) -> None:
    with pytest.raises(ValueError, match="invalid sha256 digest"):
        storage.exists(digest)


def test_invalid_s3_location() -> None:
    with pytest.raises(ValueError, match="s3://bucket"):
        open_storage("s3://")


def test_registry_on_s3_publishes_and_serves(
    moto_endpoint, tmp_path, make_patch, signing_key
) -> None:
    from .conftest import Harness

    bucket = f"reg-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        storage=f"s3://{bucket}/blobs",
        s3_endpoint_url=moto_endpoint,
    )
    engine = create_registry_engine(settings.resolved_database_url)
    from registry_server.migrations import upgrade

    upgrade(engine)
    with TestClient(create_app(settings, engine=engine)) as client:
        harness = Harness(settings, engine, client.app, client, signing_key)  # type: ignore[arg-type]
        harness.namespace("acme")
        data = make_patch()
        assert harness.upload(data).status_code == 201
        assert harness.upload(make_patch(seed=3)).status_code == 409
        url = client.get("/api/v1/packages/acme/toxicity").json()["releases"][0]["artifacts"][0][
            "url"
        ]
        assert client.get(url).content == data
        assert client.get(url, headers={"Range": "bytes=0-3"}).content == data[:4]
    engine.dispose()
    listed = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1"
    ).list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"blobs/sha256/{url.rsplit('/', 1)[1]}"]
