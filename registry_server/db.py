"""Engines and sessions. SQLite gets the pragmas that make it behave under several threads and
processes (WAL, a busy timeout, enforced foreign keys); PostgreSQL is used as it comes.

Sessions come from `session_factory`, whose `close()` survives a connection that died after
the session's last statement (see `RegistrySession`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["RegistrySession", "create_registry_engine", "session_factory"]

logger = logging.getLogger("registry_server")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_registry_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=20, max_overflow=20
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class RegistrySession(Session):
    """A session whose `close()` does not fail when the database connection is gone.

    Closing a session that still has a transaction open (every read: the registry only
    commits writes) sends ROLLBACK. When the connection died after the session's last
    statement (PostgreSQL restarted, the backend terminated, the network cut), that ROLLBACK
    fails, and the error escaped from wherever the session was closed: for the request's
    session dependency that is after the response started, so uvicorn dropped the connection
    without an answer although the route had its answer. Nothing is lost by not raising:
    closing discards uncommitted work, which the server does for a dead connection anyway, and
    a failed commit raises from `commit()`. The session's connections are invalidated, so the
    pool opens new ones instead of handing a broken one out again (SQLAlchemy does that itself
    for errors it recognises as disconnects, not for the others, which would stay checked out).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begun: list[Connection] = []  # filled by `_remember_connection`

    def close(self) -> None:
        begun, self._begun = self._begun, []
        try:
            super().close()
        except DBAPIError as error:
            logger.warning("database connection lost while closing a session: %s", error.orig)
            for connection in begun:
                if not connection.closed:
                    connection.invalidate()
                    connection.close()


@event.listens_for(RegistrySession, "after_begin")
def _remember_connection(session: Session, _transaction: Any, connection: Connection) -> None:
    # The session forgets its connections before their ROLLBACK runs; `close` needs them when
    # that ROLLBACK fails.
    assert isinstance(session, RegistrySession)
    session._begun.append(connection)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Typed as plain sessions: callers need nothing of RegistrySession but its `close()`.
    return sessionmaker[Session](engine, class_=RegistrySession, expire_on_commit=False)
