"""The registry's settings: one pydantic-settings class read from `PPATCH_REGISTRY_*` variables.

With nothing set, the registry keeps an SQLite database and a blob directory under its data
directory, so `ppatch-registry serve` needs no other service on a fresh machine.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BATCH_CEILING", "MIB", "Settings"]

MIB = 1024 * 1024
# The most entries an update check's schema lets through at all, whatever `max_batch` says: the
# schema refuses a longer list before validating its entries.
BATCH_CEILING = 10_000


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("ppatch-registry", appauthor=False))


class Settings(BaseSettings):
    """Every knob of a registry process; one instance per app (tests build their own)."""

    model_config = SettingsConfigDict(env_prefix="PPATCH_REGISTRY_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home, description="data directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under `home`"
    )
    storage: str | None = Field(
        default=None, description="blob directory or s3://bucket/prefix; default: `home`/blobs"
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="endpoint of an S3-compatible store (MinIO, Ceph, moto)"
    )
    s3_region: str = "us-east-1"
    max_upload_bytes: int = Field(default=64 * MIB, gt=0, description="largest .ppatch accepted")
    max_manifest_bytes: int = Field(default=1 * MIB, gt=0)
    max_query_length: int = Field(default=512, gt=0, description="longest search text")
    max_batch: int = Field(
        default=500, gt=0, le=BATCH_CEILING, description="most entries in one update check"
    )
    index_max_age: int = Field(
        default=60, ge=0, description="Cache-Control max-age of package indexes, seconds"
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the registry's address as users reach it, shown on the pages; never "
        "taken from a request's Host header",
    )
    max_request_bytes: int = Field(
        default=1 * MIB, gt=0, description="largest body of any request but an upload"
    )
    header_timeout: float = Field(
        default=10, gt=0, description="seconds a client has to send a request's headers"
    )
    body_timeout: float = Field(
        default=30, gt=0, description="seconds a client has to send a request body (not uploads)"
    )
    upload_timeout: float = Field(
        default=600, gt=0, description="seconds an authenticated client has to send an upload"
    )
    keep_alive_timeout: float = Field(
        default=5, gt=0, description="seconds an idle keep-alive connection stays open"
    )
    response_cache_bytes: int = Field(
        default=32 * MIB,
        ge=0,
        description="memory each server process gives to cached search answers and HTML "
        "pages (checked against the registry's generation on every request); 0 turns it off",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="bearer token /metrics requires; without one only loopback clients see it",
    )

    tuf_online_key: Path | None = Field(
        default=None,
        description="PEM private key signing targets, snapshot and timestamp; "
        "default: `home`/tuf/online-key.pem (every server process needs the same file)",
    )
    tuf_timestamp_expiry: int = Field(
        default=86400, gt=60, description="seconds a signed timestamp stays valid"
    )
    tuf_snapshot_expiry: int = Field(default=7 * 86400, gt=60)
    tuf_targets_expiry: int = Field(default=30 * 86400, gt=60)
    tuf_root_expiry: int = Field(default=365 * 86400, gt=60)

    @property
    def resolved_tuf_online_key(self) -> Path:
        return self.tuf_online_key or self.home / "tuf" / "online-key.pem"

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'registry.db'}"

    @property
    def resolved_storage(self) -> str:
        return self.storage or str(self.home / "blobs")

    @property
    def uses_default_sqlite(self) -> bool:
        return not self.database_url
