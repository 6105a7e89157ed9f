"""Running Alembic from code, and telling a fresh, current or out-of-date schema apart.

`ppatch-registry db upgrade` calls `upgrade`; `ppatch-registry serve` calls `schema_state` and
refuses to start on an out-of-date schema (only a fresh, empty SQLite database is migrated on
the spot, so a newcomer needs one command).
"""

from __future__ import annotations

import enum
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

__all__ = ["SchemaState", "alembic_config", "head_revision", "schema_state", "upgrade"]


class SchemaState(enum.Enum):
    EMPTY = "empty"  # no tables at all: a fresh database
    CURRENT = "current"  # at the newest revision
    OUTDATED = "outdated"  # an older revision, or tables without Alembic's version row
    UNKNOWN = "unknown"  # a revision this code does not know (newer code migrated it)


def alembic_config() -> Config:
    ini = Path(str(resources.files("registry_server").joinpath("alembic.ini")))
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "alembic"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the registry has no migrations")
    return head


def schema_state(engine: Engine) -> tuple[SchemaState, str | None]:
    """The schema's state and its current revision (None when it has none)."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        tables = inspect(connection).get_table_names()
    if current is None:
        return (SchemaState.EMPTY if not tables else SchemaState.OUTDATED), None
    if current == script.get_current_head():
        return SchemaState.CURRENT, current
    known = {revision.revision for revision in script.walk_revisions()}
    return (SchemaState.OUTDATED if current in known else SchemaState.UNKNOWN), current


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
