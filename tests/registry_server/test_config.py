"""Settings come from PPATCH_REGISTRY_* variables; the defaults need no other service."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry_server.config import Settings
from registry_server.storage import LocalStorage, S3Storage, open_storage


def test_defaults_live_under_the_data_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PPATCH_REGISTRY_HOME", str(tmp_path))
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'registry.db'}"
    assert settings.resolved_storage == str(tmp_path / "blobs")
    assert isinstance(open_storage(settings.resolved_storage), LocalStorage)


def test_variables_override_the_defaults(monkeypatch) -> None:
    monkeypatch.setenv("PPATCH_REGISTRY_DATABASE_URL", "postgresql+psycopg://u@db/ppatch")
    monkeypatch.setenv("PPATCH_REGISTRY_STORAGE", "s3://bucket/prefix")
    monkeypatch.setenv("PPATCH_REGISTRY_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("PPATCH_REGISTRY_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@db/ppatch"
    assert settings.max_upload_bytes == 1024
    storage = open_storage(settings.resolved_storage, endpoint_url=settings.s3_endpoint_url)
    assert isinstance(storage, S3Storage)
    assert storage.describe() == "s3://bucket/prefix at http://minio:9000"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PPATCH_REGISTRY_MAX_UPLOAD_BYTES", "0"), ("PPATCH_REGISTRY_INDEX_MAX_AGE", "-1")],
)
def test_invalid_values_are_refused(monkeypatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_home_expands_the_user_folder(monkeypatch) -> None:
    monkeypatch.setenv("PPATCH_REGISTRY_HOME", "~/registry")
    assert Settings().home == Path("~/registry").expanduser()
