"""Alembic's environment: the schema is the models' metadata; the connection comes from
`registry_server.migrations` (config attribute `connection`) or from the registry's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from registry_server.config import Settings
from registry_server.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url
    engine = create_engine(url)
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `db upgrade`")
run_migrations_online()
