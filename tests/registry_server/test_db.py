"""Sessions whose database connection dies: closing one never raises (a read's ROLLBACK on a
dead connection loses nothing), the broken connection leaves the pool, and a failed commit
still raises."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from registry_server import admin
from registry_server.db import create_registry_engine, session_factory
from registry_server.models import Namespace

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_registry_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_database: str) -> Iterator[Engine]:
    engine = create_registry_engine(postgres_database)
    yield engine
    engine.dispose()


def _terminate(backend_pid: int) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        terminated = connection.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        assert terminated.fetchone() == (True,)


def _namespace_exists(engine: Engine, name: str) -> bool:
    with session_factory(engine)() as session:
        return session.scalar(select(Namespace.id).where(Namespace.name == name)) is not None


@pytest.mark.postgres
def test_closing_a_read_whose_backend_was_terminated_does_not_raise(
    postgres_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    session = session_factory(postgres_engine)()
    backend = session.scalar(text("SELECT pg_backend_pid()"))  # opens the read's transaction
    assert isinstance(backend, int)
    _terminate(backend)
    with caplog.at_level(logging.WARNING, logger="registry_server"):
        session.close()  # its ROLLBACK fails: the connection is gone
    assert "database connection lost while closing a session" in caplog.text
    assert postgres_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The pool hands out a live connection next, not the dead one.
    with session_factory(postgres_engine)() as session:
        assert session.scalar(text("SELECT pg_backend_pid()")) != backend


@pytest.mark.postgres
def test_a_commit_whose_backend_was_terminated_still_raises(postgres_engine: Engine) -> None:
    session = session_factory(postgres_engine)()
    backend = session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(backend, int)
    name = f"lost-{uuid.uuid4().hex[:8]}"  # the session's database is shared, not emptied
    admin.create_namespace(session, name, admin.CLI_ACTOR)
    _terminate(backend)
    with pytest.raises(OperationalError):
        session.commit()
    session.close()
    assert not _namespace_exists(postgres_engine, name)


def test_a_failed_rollback_at_close_discards_the_connection(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session = session_factory(engine)()
    session.scalar(select(func.count(Namespace.id)))
    broken = session.connection().connection.dbapi_connection
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.OperationalError

    def failing_rollback(_connection: Any) -> None:
        raise dbapi_error("rollback failed")

    monkeypatch.setattr(engine.dialect, "do_rollback", failing_rollback)
    with caplog.at_level(logging.WARNING, logger="registry_server"):
        session.close()
    monkeypatch.undo()
    assert "rollback failed" in caplog.text
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with session_factory(engine)() as session:
        session.scalar(select(func.count(Namespace.id)))
        assert session.connection().connection.dbapi_connection is not broken
