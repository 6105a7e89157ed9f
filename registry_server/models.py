"""The registry's tables as SQLAlchemy 2.0 typed mappings: Namespace -> Package -> Release ->
Artifact, with tokens, signing keys, the permanent ledger of published files and the audit log.

Uniqueness and digest formats are database constraints (warehouse's habit), so a second server
process racing this one cannot slip past a Python-only check. Alembic owns the schema
(`registry_server/alembic/versions`); these mappings and the migrations must agree
(tests/registry_server/test_migrations.py compares them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from patchfmt.names import MAX_NAME_PART_LENGTH, NAME_PART_PATTERN

__all__ = [
    "SCOPES",
    "Artifact",
    "AuditEvent",
    "Base",
    "Namespace",
    "Package",
    "PublishedFile",
    "RegistryState",
    "Release",
    "SigningKey",
    "Token",
    "TufMetadata",
    "format_checks",
    "utcnow",
]

SCOPES = ("publish", "yank", "admin")

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hex_check(column: str, length: int, name: str, prefix: str = "") -> list[CheckConstraint]:
    """`column` holds `prefix` + exactly `length` lowercase hex digits, on every database."""
    hex_part = f"substr({column}, {len(prefix) + 1})" if prefix else column
    portable = CheckConstraint(
        f"length({column}) = {len(prefix) + length} AND {column} = lower({column})"
        + (f" AND substr({column}, 1, {len(prefix)}) = '{prefix}'" if prefix else ""),
        name=f"{name}_length",
    )
    # Neither database has the other's pattern syntax: a regex in PostgreSQL, GLOB in SQLite.
    postgres = CheckConstraint(
        f"{column} ~ '^{prefix}[0-9a-f]{{{length}}}$'", name=f"{name}_hex"
    ).ddl_if(dialect="postgresql")
    sqlite = CheckConstraint(f"{hex_part} NOT GLOB '*[^0-9a-f]*'", name=f"{name}_hex").ddl_if(
        dialect="sqlite"
    )
    return [portable, postgres, sqlite]


def _name_check(column: str, name: str) -> list[CheckConstraint]:
    """The name rule of `patchfmt.names` as constraints (SQLite has no regular expressions:
    its GLOB spells the same character rule)."""
    portable = CheckConstraint(
        f"length({column}) BETWEEN 1 AND {MAX_NAME_PART_LENGTH} AND {column} = lower({column})",
        name=f"{name}_length",
    )
    postgres = CheckConstraint(
        f"{column} ~ '^{NAME_PART_PATTERN.pattern}$'", name=f"{name}_chars"
    ).ddl_if(dialect="postgresql")
    sqlite = CheckConstraint(
        f"{column} NOT GLOB '*[^a-z0-9_-]*' AND substr({column}, 1, 1) GLOB '[a-z0-9]'",
        name=f"{name}_chars",
    ).ddl_if(dialect="sqlite")
    return [portable, postgres, sqlite]


def format_checks(table: str) -> list[CheckConstraint]:
    """The format constraints of `table`; the initial migration uses the same list."""
    checks: dict[str, list[CheckConstraint]] = {
        "namespaces": _name_check("name", "name"),
        "packages": _name_check("name", "name"),
        "tokens": [
            *_hex_check("secret_hash", 64, "secret_hash"),
            CheckConstraint("scope IN ('publish', 'yank', 'admin')", name="scope"),
        ],
        "artifacts": [
            *_hex_check("sha256", 64, "sha256"),
            *_hex_check("fingerprint", 64, "fingerprint", prefix="sha256:"),
            CheckConstraint("size >= 0", name="size"),
        ],
        "published_files": [
            *_hex_check("sha256", 64, "sha256"),
            *_hex_check("fingerprint", 64, "fingerprint", prefix="sha256:"),
        ],
    }
    return checks.get(table, [])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class Namespace(Base):
    __tablename__ = "namespaces"
    __table_args__ = (*format_checks("namespaces"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    packages: Mapped[list[Package]] = relationship(back_populates="namespace")


class Token(Base):
    """An API token; only the sha256 of its secret is kept, the token itself is shown once."""

    __tablename__ = "tokens"
    __table_args__ = (*format_checks("tokens"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    namespace: Mapped[Namespace] = relationship()


class SigningKey(Base):
    """A public key allowed to sign a namespace's patches, until it is revoked."""

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("namespace_id", "key_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(128))
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    namespace: Mapped[Namespace] = relationship()


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("namespace_id", "name"), *format_checks("packages"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    domain: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Changes with every write to the package (upload, yank, unyank), in the same transaction:
    # the index's ETag, so any number of server processes agree on it without talking.
    index_etag: Mapped[str] = mapped_column(String(64))

    namespace: Mapped[Namespace] = relationship(back_populates="packages")
    releases: Mapped[list[Release]] = relationship(back_populates="package")


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("package_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), index=True)
    version: Mapped[str] = mapped_column(String(128))
    prerelease: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text, default=None)

    package: Mapped[Package] = relationship(back_populates="releases")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="release")


class Artifact(Base):
    """One `.ppatch` of a release, for one base-model fingerprint."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("release_id", "fingerprint"),
        UniqueConstraint("sha256"),
        *format_checks("artifacts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(71), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(300))
    key_id: Mapped[str] = mapped_column(String(128))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    uploaded_by: Mapped[str | None] = mapped_column(ForeignKey("tokens.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    release: Mapped[Release] = relationship(back_populates="artifacts")


class PublishedFile(Base):
    """The permanent ledger of every (package, version, fingerprint) ever published, and its bytes.

    Rows are never deleted, so when an artifact is removed by hand its row here stays as a
    tombstone and the version+fingerprint can never be reused for other bytes.
    """

    __tablename__ = "published_files"
    __table_args__ = (
        UniqueConstraint("namespace", "package", "version", "fingerprint"),
        *format_checks("published_files"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    package: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(String(71))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who (token id, or `cli` for the admin command line) did what, when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[str | None] = mapped_column(String(32), default=None)
    namespace: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RegistryState(Base):
    """One row (id 1): the generation, a random value that every change to the index replaces
    in the transaction that makes the change (registry_server.generation), so any number of
    server processes can tell whether an answer they cached is still current."""

    __tablename__ = "registry_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[str] = mapped_column(String(32))


class TufMetadata(Base):
    """One signed TUF metadata file (root, targets, snapshot or timestamp) at one version.

    Rows are never changed: a new version is a new row, so every server process serves the same
    bytes for a version (registry_server/tuf_repo.py).
    """

    __tablename__ = "tuf_metadata"
    __table_args__ = (UniqueConstraint("role", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    # For targets: the state of the audit log it was built from (tuf_repo._marker).
    marker: Mapped[str] = mapped_column(String(64), default="")
    body: Mapped[str] = mapped_column(Text)
    expires: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
