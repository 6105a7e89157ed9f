"""The Alembic schema agrees with the models, on SQLite and PostgreSQL, and its constraints hold."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from registry_server.migrations import SchemaState, head_revision, schema_state
from registry_server.models import Base


def test_migrated_schema_matches_the_models(database_url) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert schema_state(engine) == (SchemaState.CURRENT, head_revision())
    engine.dispose()
    assert differences == []


SHA = "0" * 64
FP = "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("INSERT INTO namespaces (name, created_at) VALUES ('Acme', now)", "name"),
        ("INSERT INTO namespaces (name, created_at) VALUES ('a/../b', now)", "name"),
        ("INSERT INTO namespaces (name, created_at) VALUES ('-acme', now)", "name"),
        ("INSERT INTO namespaces (name, created_at) VALUES ('acme', now)", "unique"),
        (f"INSERT INTO published_files (namespace, package, version, fingerprint, sha256, "
         f"created_at) VALUES ('a', 'b', '1.0.0', '{FP}', 'ABC', now)", "sha256"),
        (f"INSERT INTO published_files (namespace, package, version, fingerprint, sha256, "
         f"created_at) VALUES ('a', 'b', '1.0.0', '{FP}', '{'g' * 64}', now)", "sha256"),
        (f"INSERT INTO published_files (namespace, package, version, fingerprint, sha256, "
         f"created_at) VALUES ('a', 'b', '1.0.0', 'md5:{'1' * 64}', '{SHA}', now)", "fingerprint"),
        (f"INSERT INTO published_files (namespace, package, version, fingerprint, sha256, "
         f"created_at) VALUES ('a', 'b', '1.0.0', '{FP}', '{SHA}', now)", "unique"),
    ],
)  # fmt: skip
def test_database_constraints_refuse_bad_rows(database_url, statement, constraint) -> None:
    engine = create_engine(database_url)
    now = "CURRENT_TIMESTAMP"
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO namespaces (name, created_at) VALUES ('acme', " + now + ")")
        )
        connection.execute(
            text(
                "INSERT INTO published_files (namespace, package, version, fingerprint, sha256, "
                f"created_at) VALUES ('a', 'b', '1.0.0', '{FP}', '{SHA}', {now})"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(statement.replace(", now)", f", {now})")))
    engine.dispose()
