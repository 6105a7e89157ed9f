"""Request and response bodies of API v1 (docs/architecture.md, "The registry's JSON"), kept
apart from the ORM models so the wire format changes only on purpose."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from registry_server.config import BATCH_CEILING
from registry_server.free_text import FreeText

__all__ = [
    "ERROR_RESPONSES",
    "ArtifactOut",
    "ErrorBody",
    "ErrorDetail",
    "IndexOut",
    "InstalledPatch",
    "KeyAdded",
    "KeyIn",
    "KeyOut",
    "KeysOut",
    "NamespaceIn",
    "NamespaceOut",
    "PublishOut",
    "ReleaseOut",
    "SearchOut",
    "SearchResult",
    "TokenIn",
    "TokenInfo",
    "TokenOut",
    "TokenRevoked",
    "UpdateResult",
    "UpdatesIn",
    "UpdatesOut",
    "YankIn",
    "YankOut",
]

_STRICT = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# Every route's error answers, in the OpenAPI schema (instead of FastAPI's own 422 shape).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {"model": ErrorBody, "description": "a client error; `code` says which"},
    "5XX": {
        "model": ErrorBody,
        "description": "database_unavailable, storage_unavailable, internal",
    },
}


class ArtifactOut(BaseModel):
    fingerprint: str
    sha256: str
    size: int
    url: str
    filename: str
    key_id: str


class ReleaseOut(BaseModel):
    version: str
    yanked: bool
    yanked_reason: str | None
    created: dt.datetime
    artifacts: list[ArtifactOut]


class IndexOut(BaseModel):
    namespace: str
    name: str
    domain: str
    summary: str
    releases: list[ReleaseOut]


class KeyOut(BaseModel):
    key_id: str
    public_key: str
    active: bool


class KeysOut(BaseModel):
    namespace: str
    keys: list[KeyOut]


class SearchResult(BaseModel):
    namespace: str
    name: str
    domain: str
    summary: str
    latest_version: str | None
    fingerprints: list[str]


class SearchOut(BaseModel):
    results: list[SearchResult]


class InstalledPatch(BaseModel):
    model_config = _STRICT

    name: str = Field(max_length=200)
    version: str = Field(max_length=128)
    fingerprint: str = Field(max_length=100)


class UpdatesIn(BaseModel):
    model_config = _STRICT

    # The ceiling is part of the schema so a longer list is refused before its entries are
    # validated; the route then applies the configured `max_batch`.
    installed: list[InstalledPatch] = Field(max_length=BATCH_CEILING)


class UpdateResult(BaseModel):
    name: str
    version: str
    fingerprint: str
    found: bool
    latest: str | None
    latest_artifact: ArtifactOut | None
    yanked: bool
    yanked_reason: str | None


class UpdatesOut(BaseModel):
    results: list[UpdateResult]


class PublishOut(BaseModel):
    name: str
    version: str
    fingerprint: str
    sha256: str
    size: int
    url: str


class YankIn(BaseModel):
    model_config = _STRICT

    reason: FreeText = Field(default="", max_length=1000)


class YankOut(BaseModel):
    name: str
    version: str
    yanked: bool
    reason: str | None


class NamespaceIn(BaseModel):
    model_config = _STRICT

    name: str = Field(max_length=200)


class NamespaceOut(BaseModel):
    name: str


class TokenIn(BaseModel):
    model_config = _STRICT

    scope: str = "publish"
    description: FreeText = Field(default="", max_length=200)


class TokenOut(BaseModel):
    token_id: str
    namespace: str
    scope: str
    token: str = Field(description="shown once; only its hash is stored")


class TokenInfo(BaseModel):
    token_id: str
    namespace: str
    scope: str


class TokenRevoked(BaseModel):
    token_id: str
    revoked: bool


class KeyIn(BaseModel):
    model_config = _STRICT

    public_key: str = Field(max_length=16384, description="ed25519 public key, PEM")


class KeyAdded(BaseModel):
    namespace: str
    key_id: str
    active: bool
