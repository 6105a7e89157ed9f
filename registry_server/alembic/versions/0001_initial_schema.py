"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The format rules as they stood at this revision (kept here, not imported from the models, so
# the migration never changes under a later edit). Neither database has the other's pattern
# syntax: a regex in PostgreSQL, GLOB in SQLite.
def _hex(
    column: str, length: int, name: str, dialect: str, prefix: str = ""
) -> list[sa.CheckConstraint]:
    checks = [
        sa.CheckConstraint(
            f"length({column}) = {len(prefix) + length} AND {column} = lower({column})"
            + (f" AND substr({column}, 1, {len(prefix)}) = '{prefix}'" if prefix else ""),
            name=f"{name}_length",
        )
    ]
    if dialect == "postgresql":
        checks.append(
            sa.CheckConstraint(f"{column} ~ '^{prefix}[0-9a-f]{{{length}}}$'", name=f"{name}_hex")
        )
    elif dialect == "sqlite":
        part = f"substr({column}, {len(prefix) + 1})" if prefix else column
        checks.append(sa.CheckConstraint(f"{part} NOT GLOB '*[^0-9a-f]*'", name=f"{name}_hex"))
    return checks


def _name(column: str, dialect: str) -> list[sa.CheckConstraint]:
    checks = [
        sa.CheckConstraint(
            f"length({column}) BETWEEN 1 AND 64 AND {column} = lower({column})", name="name_length"
        )
    ]
    if dialect == "postgresql":
        checks.append(sa.CheckConstraint(f"{column} ~ '^[a-z0-9][a-z0-9_-]*$'", name="name_chars"))
    elif dialect == "sqlite":
        checks.append(
            sa.CheckConstraint(
                f"{column} NOT GLOB '*[^a-z0-9_-]*' AND substr({column}, 1, 1) GLOB '[a-z0-9]'",
                name="name_chars",
            )
        )
    return checks


def _format_checks(table: str, dialect: str) -> list[sa.CheckConstraint]:
    if table in ("namespaces", "packages"):
        return _name("name", dialect)
    if table == "tokens":
        return [
            *_hex("secret_hash", 64, "secret_hash", dialect),
            sa.CheckConstraint("scope IN ('publish', 'yank', 'admin')", name="scope"),
        ]
    digests = [
        *_hex("sha256", 64, "sha256", dialect),
        *_hex("fingerprint", 64, "fingerprint", dialect, prefix="sha256:"),
    ]
    if table == "artifacts":
        digests.append(sa.CheckConstraint("size >= 0", name="size"))
    return digests


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=True),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_events_namespace"), ["namespace"], unique=False)

    op.create_table(
        "namespaces",
        *_format_checks("namespaces", dialect),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_table(
        "published_files",
        *_format_checks("published_files", dialect),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("package", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_files")),
        sa.UniqueConstraint(
            "namespace",
            "package",
            "version",
            "fingerprint",
            name=op.f("uq_published_files_namespace"),
        ),
    )
    op.create_table(
        "packages",
        *_format_checks("packages", dialect),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("index_etag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_packages_namespace_id_namespaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packages")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_packages_namespace_id")),
    )
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_packages_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_packages_namespace_id"), ["namespace_id"], unique=False
        )

    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_signing_keys_namespace_id_namespaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("namespace_id", "key_id", name=op.f("uq_signing_keys_namespace_id")),
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_keys_namespace_id"), ["namespace_id"], unique=False
        )

    op.create_table(
        "tokens",
        *_format_checks("tokens", dialect),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_tokens_namespace_id_namespaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tokens_namespace_id"), ["namespace_id"], unique=False)

    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("prerelease", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("yanked", sa.Boolean(), nullable=False),
        sa.Column("yanked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["package_id"], ["packages.id"], name=op.f("fk_releases_package_id_packages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("package_id", "version", name=op.f("uq_releases_package_id")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_package_id"), ["package_id"], unique=False)

    op.create_table(
        "artifacts",
        *_format_checks("artifacts", dialect),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_artifacts_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["tokens.id"], name=op.f("fk_artifacts_uploaded_by_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("release_id", "fingerprint", name=op.f("uq_artifacts_release_id")),
        sa.UniqueConstraint("sha256", name=op.f("uq_artifacts_sha256")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_fingerprint"), ["fingerprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_release_id"), ["release_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_release_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_fingerprint"))

    op.drop_table("artifacts")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_package_id"))

    op.drop_table("releases")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_namespace_id"))

    op.drop_table("tokens")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_namespace_id"))

    op.drop_table("signing_keys")
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_packages_namespace_id"))
        batch_op.drop_index(batch_op.f("ix_packages_name"))

    op.drop_table("packages")
    op.drop_table("published_files")
    op.drop_table("namespaces")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_namespace"))
        batch_op.drop_index(batch_op.f("ix_audit_events_created_at"))

    op.drop_table("audit_events")
