"""The registry's generation: one random value, replaced by every change to the index.

Every write to the registry (an upload, a yank or unyank, a namespace, token or key change)
records an audit row through `admin.record_audit`, which marks its session changed; just before
that session commits, the generation row (`registry_state`, id 1) gets a new random value in the
same transaction. So the generation changes exactly when what readers could see changed, on
every server process at once, and a process that cached an answer knows it is still current by
reading one row: if the generation it read *before* computing the answer is the one it reads
now, no change has committed in between.

The new value is written last, after the transaction's other statements, so on PostgreSQL the
row's lock is held only while committing: writers queue there, never while holding it.

A row changed by hand in SQL, outside the registry's code, changes nothing here: run
`UPDATE registry_state SET generation = md5(random()::text) WHERE id = 1` (PostgreSQL) or
restart the servers after such an edit (docs/registry.md).
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry_server.direct_sql import AsyncPostgresBatcher, DbapiStatement, postgres_conninfo
from registry_server.models import RegistryState

__all__ = [
    "AsyncPostgresGeneration",
    "DbapiGeneration",
    "GenerationReader",
    "generation_reader_for",
    "mark_changed",
]

_CHANGED = "ppatch.registry_changed"
_STATE_ID = 1
_GENERATION_SQL = "SELECT generation FROM registry_state WHERE id = 1"


def mark_changed(session: Session) -> None:
    """The session's transaction changes the index: replace the generation when it commits."""
    session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _replace_generation(session: Session) -> None:
    if not session.info.pop(_CHANGED, False):
        return
    session.flush()  # the change itself first: the generation row is locked only to commit
    value = secrets.token_hex(16)
    # An upsert: the row may be missing (emptied by hand), and two writers must not both
    # insert it. Both databases the registry runs on spell it the same way.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(RegistryState)
        .values(id=_STATE_ID, generation=value)
        .on_conflict_do_update(index_elements=["id"], set_={"generation": value})
    )


@event.listens_for(Session, "after_rollback")
def _forget_change(session: Session) -> None:
    session.info.pop(_CHANGED, None)


class GenerationReader(Protocol):
    async def current(self) -> str | None:
        """The generation now (read after this call began), or None when the row is missing
        (then nothing may be cached). Raises OperationalError when the database fails."""

    async def aclose(self) -> None:
        """Close the connections opened for the running event loop (at shutdown)."""


class DbapiGeneration:
    """Read inline on a DB-API connection of the calling thread (SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self._statement = DbapiStatement(engine, _GENERATION_SQL)

    async def current(self) -> str | None:
        row = self._statement.fetchone()
        return None if row is None else str(row[0])

    async def aclose(self) -> None:
        self._statement.close()


class AsyncPostgresGeneration(AsyncPostgresBatcher[None, str]):
    """Read on psycopg async connections; every request that arrives while a read runs shares
    the next one."""

    def __init__(self, conninfo: str, *, query_timeout: float = 5.0) -> None:
        super().__init__(conninfo, _GENERATION_SQL, connections=2, query_timeout=query_timeout)

    async def current(self) -> str | None:
        return await self.fetch_key(None)

    async def _select(self, connection: Any, keys: list[None]) -> dict[None, str]:
        cursor = await connection.execute(_GENERATION_SQL)
        row = await cursor.fetchone()
        return {} if row is None else {None: str(row[0])}


def generation_reader_for(engine: Engine) -> GenerationReader:
    conninfo = postgres_conninfo(engine)
    if conninfo is not None:
        return AsyncPostgresGeneration(conninfo)
    return DbapiGeneration(engine)
