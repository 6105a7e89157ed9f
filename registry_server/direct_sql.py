"""Fixed SQL lookups on connections of their own, beside SQLAlchemy's pool.

Two shortcuts answer most anonymous requests after one small indexed lookup: the polling 304
(`registry_server.polling`, a package's ETag) and the response cache (`registry_server.
response_cache`, the registry's generation). SQLAlchemy's pool and statement layers cost several
times such a query, so these lookups run one fixed statement in autocommit (never holding a
transaction open), reconnecting after any database error, which they raise as SQLAlchemy's
`OperationalError`. They hold no data: every call asks the database, so any number of server
processes agree.

- `DbapiStatement`: a plain DB-API connection per calling thread, queried inline (SQLite: tens
  of microseconds, shorter than a hop to the thread pool).
- `AsyncPostgresBatcher`: psycopg async connections (a few per event loop), so the loop serves
  other requests while the database answers, and lookups that arrive while a query runs are
  batched into the next one (one round trip answers many requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

__all__ = ["AsyncPostgresBatcher", "DbapiStatement", "postgres_conninfo"]

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def postgres_conninfo(engine: Engine) -> str | None:
    """The psycopg connection string of `engine`'s database, when it is PostgreSQL through
    psycopg (the driver the async lookups use); None otherwise."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


class DbapiStatement:
    """One fixed statement on a DB-API connection per calling thread, run synchronously.

    `sql` spells its parameters `{0}`, replaced by the driver's placeholder."""

    def __init__(self, engine: Engine, sql: str) -> None:
        self._engine = engine
        paramstyle = engine.dialect.paramstyle
        if paramstyle not in _PLACEHOLDER:
            raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")
        self._sql = sql.format(_PLACEHOLDER[paramstyle])
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        connection = self._engine.raw_connection()
        with self._lock:
            self._opened.append(connection)
        driver: Any = connection.driver_connection
        if hasattr(driver, "autocommit") and self._engine.dialect.name != "sqlite":
            driver.autocommit = True
        return connection

    def fetchone(self, parameters: Sequence[Any] = ()) -> Any:
        """The statement's first row, or None."""
        try:
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = self._connect()
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, tuple(parameters))
                return cursor.fetchone()
            finally:
                cursor.close()
        except self._engine.dialect.loaded_dbapi.Error as error:
            self._discard(getattr(self._local, "connection", None))
            raise OperationalError(self._sql, tuple(parameters), error) from error

    def _discard(self, connection: Any) -> None:
        self._local.connection = None
        if connection is None:
            return
        with self._lock:
            if connection in self._opened:
                self._opened.remove(connection)
        with contextlib.suppress(Exception):
            connection.invalidate()

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(Exception):
                connection.invalidate()


Key = TypeVar("Key")
Value = TypeVar("Value")


class _LoopBatcher(Generic[Key, Value]):
    """The lookups of one event loop: those waiting for a query, and the connections."""

    def __init__(self, size: int) -> None:
        self.waiting: dict[Key, list[asyncio.Future[Value | None]]] = {}
        self.connections: list[Any] = [None] * size
        self.free_slots = list(range(size))
        self.start_scheduled = False
        self.running: set[asyncio.Task[None]] = set()
        self.closed = False


class AsyncPostgresBatcher(Generic[Key, Value]):
    """Batches the lookups of each event loop into one query per round trip; subclasses say
    what the query is (`_select`, given an open connection and the keys asked for).

    A lookup never joins a query that is already running: it waits for the next one, which
    starts after it was asked, so no answer is older than its request (a read right after a
    write sees the write). While a query runs, every lookup that arrives queues, and the next
    query answers them all: under load one round trip to PostgreSQL answers dozens of
    requests instead of one, and an idle server answers a single lookup with no added wait
    (the query starts on the next turn of the loop).
    """

    def __init__(
        self,
        conninfo: str,
        sql: str,
        *,
        connections: int = 2,
        connect_timeout: int = 5,
        query_timeout: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._sql = sql
        self._size = connections
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _LoopBatcher[Key, Value]
        ] = weakref.WeakKeyDictionary()

    async def _select(self, connection: Any, keys: list[Key]) -> dict[Key, Value]:
        raise NotImplementedError

    def _for_loop(self) -> _LoopBatcher[Key, Value]:
        loop = asyncio.get_running_loop()
        batcher = self._loops.get(loop)
        if batcher is None:
            batcher = self._loops[loop] = _LoopBatcher(self._size)
        return batcher

    async def fetch_key(self, key: Key) -> Value | None:
        """The value for `key` (None when the database has none), read after this call."""
        batcher = self._for_loop()
        answer: asyncio.Future[Value | None] = asyncio.get_running_loop().create_future()
        batcher.waiting.setdefault(key, []).append(answer)
        self._schedule_start(batcher)
        return await answer

    def _schedule_start(self, batcher: _LoopBatcher[Key, Value]) -> None:
        # On the next turn of the loop, so that lookups arriving in this one share the query.
        if batcher.closed or batcher.start_scheduled:
            return
        if batcher.waiting and batcher.free_slots:
            batcher.start_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_query, batcher)

    def _start_query(self, batcher: _LoopBatcher[Key, Value]) -> None:
        batcher.start_scheduled = False
        if batcher.closed or not batcher.waiting or not batcher.free_slots:
            return
        slot = batcher.free_slots.pop()
        batch, batcher.waiting = batcher.waiting, {}
        task = asyncio.get_running_loop().create_task(self._answer(batcher, slot, batch))
        batcher.running.add(task)
        task.add_done_callback(batcher.running.discard)

    async def _answer(
        self,
        batcher: _LoopBatcher[Key, Value],
        slot: int,
        batch: dict[Key, list[asyncio.Future[Value | None]]],
    ) -> None:
        import psycopg

        keys = list(batch)
        try:
            found = await asyncio.wait_for(self._query(batcher, slot, keys), self._query_timeout)
        except asyncio.CancelledError:  # shutting down: the waiting requests end too
            for answers in batch.values():
                for answer in answers:
                    answer.cancel()
            raise
        except (psycopg.Error, OSError, TimeoutError) as error:
            # A query cut short leaves its connection in an unknown state: open a new one.
            broken, batcher.connections[slot] = batcher.connections[slot], None
            if broken is not None:
                with contextlib.suppress(Exception):
                    await broken.close()
            for key, answers in batch.items():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(OperationalError(self._sql, [key], error))
        else:
            for key, answers in batch.items():
                value = found.get(key)
                for answer in answers:
                    if not answer.done():  # a request cancelled while it waited
                        answer.set_result(value)
        finally:
            batcher.free_slots.append(slot)
            self._schedule_start(batcher)

    async def _query(
        self, batcher: _LoopBatcher[Key, Value], slot: int, keys: list[Key]
    ) -> dict[Key, Value]:
        import psycopg

        connection = batcher.connections[slot]
        if connection is None or connection.closed:
            connection = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                prepare_threshold=0,
                connect_timeout=self._connect_timeout,
            )
            batcher.connections[slot] = connection
        return await self._select(connection, keys)

    async def aclose(self) -> None:
        """Close the connections opened for the running event loop (at shutdown)."""
        batcher = self._loops.pop(asyncio.get_running_loop(), None)
        if batcher is None:
            return
        batcher.closed = True
        for task in list(batcher.running):
            task.cancel()
        await asyncio.gather(*batcher.running, return_exceptions=True)
        for answers in batcher.waiting.values():
            for answer in answers:
                answer.cancel()
        for connection in batcher.connections:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
