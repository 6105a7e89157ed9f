"""The ETag lookup of the polling path: what a 304 answer to `If-None-Match` costs.

A package's index is polled far more often than it changes, and its 304 answer must cost about
what the framework costs (benchmarks/registry.py). SQLAlchemy's pool and statement layers cost
several times the query itself, so the lookup runs one fixed SQL statement on connections of its
own, in autocommit (never holding a transaction open), reconnecting after any database error.
It holds no data: every call asks the database, so any number of processes agree.

- SQLite: a plain DB-API connection per calling thread, queried inline (tens of microseconds,
  shorter than a hop to the thread pool).
- PostgreSQL: psycopg async connections (two per event loop), so the loop serves other requests
  while the database answers, and lookups that arrive while a query runs are batched into the
  next one (one round trip answers many polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from patchfmt.names import is_name_part
from registry_server.index import etag_matches, quoted_etag

__all__ = [
    "AsyncPostgresEtagLookup",
    "ConditionalIndexMiddleware",
    "DbapiEtagLookup",
    "EtagLookup",
    "etag_lookup_for",
]

_ETAG_SQL = (
    "SELECT packages.index_etag FROM packages JOIN namespaces"
    " ON packages.namespace_id = namespaces.id"
    " WHERE namespaces.name = {0} AND packages.name = {0}"
)
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


class EtagLookup(Protocol):
    async def fetch(self, namespace: str, name: str) -> str | None:
        """The package's ETag (quoted), or None when there is no such package."""

    async def aclose(self) -> None:
        """Close the connections opened for the running event loop (at shutdown)."""


class DbapiEtagLookup:
    """One DB-API connection per calling thread, queried synchronously."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        paramstyle = engine.dialect.paramstyle
        if paramstyle not in _PLACEHOLDER:
            raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")
        self._sql = _ETAG_SQL.format(_PLACEHOLDER[paramstyle])
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

    def lookup(self, namespace: str, name: str) -> str | None:
        try:
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = self._connect()
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, (namespace, name))
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self._engine.dialect.loaded_dbapi.Error as error:
            self._discard(getattr(self._local, "connection", None))
            raise OperationalError(self._sql, (namespace, name), error) from error
        return None if row is None else quoted_etag(str(row[0]))

    async def fetch(self, namespace: str, name: str) -> str | None:
        return self.lookup(namespace, name)

    def _discard(self, connection: Any) -> None:
        self._local.connection = None
        if connection is None:
            return
        with self._lock:
            if connection in self._opened:
                self._opened.remove(connection)
        with contextlib.suppress(Exception):
            connection.invalidate()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(Exception):
                connection.invalidate()


_BATCH_SQL = (
    "SELECT namespaces.name, packages.name, packages.index_etag"
    " FROM unnest(%s::text[], %s::text[]) AS wanted(namespace, name)"
    " JOIN namespaces ON namespaces.name = wanted.namespace"
    " JOIN packages ON packages.namespace_id = namespaces.id AND packages.name = wanted.name"
)

_Key = tuple[str, str]


class _LoopBatcher:
    """The lookups of one event loop: those waiting for a query, and the connections."""

    def __init__(self, size: int) -> None:
        self.waiting: dict[_Key, list[asyncio.Future[str | None]]] = {}
        self.connections: list[Any] = [None] * size
        self.free_slots = list(range(size))
        self.start_scheduled = False
        self.running: set[asyncio.Task[None]] = set()
        self.closed = False


class AsyncPostgresEtagLookup:
    """Batches the lookups of each event loop into one query per round trip.

    A lookup never joins a query that is already running: it waits for the next one, which
    starts after it was asked, so no answer is older than its request (a poll right after a
    publish sees the publish). While a query runs, every lookup that arrives queues, and the
    next query answers them all: under the load of many deployments polling, one round trip
    to PostgreSQL answers dozens of requests instead of one, and an idle server answers a
    single lookup with no added wait (the query starts on the next turn of the loop).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        connections: int = 2,
        connect_timeout: int = 5,
        query_timeout: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._size = connections
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatcher] = (
            weakref.WeakKeyDictionary()
        )

    def _for_loop(self) -> _LoopBatcher:
        loop = asyncio.get_running_loop()
        batcher = self._loops.get(loop)
        if batcher is None:
            batcher = self._loops[loop] = _LoopBatcher(self._size)
        return batcher

    async def fetch(self, namespace: str, name: str) -> str | None:
        batcher = self._for_loop()
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        batcher.waiting.setdefault((namespace, name), []).append(answer)
        self._schedule_start(batcher)
        return await answer

    def _schedule_start(self, batcher: _LoopBatcher) -> None:
        # On the next turn of the loop, so that lookups arriving in this one share the query.
        if batcher.closed or batcher.start_scheduled:
            return
        if batcher.waiting and batcher.free_slots:
            batcher.start_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_query, batcher)

    def _start_query(self, batcher: _LoopBatcher) -> None:
        batcher.start_scheduled = False
        if batcher.closed or not batcher.waiting or not batcher.free_slots:
            return
        slot = batcher.free_slots.pop()
        batch, batcher.waiting = batcher.waiting, {}
        task = asyncio.get_running_loop().create_task(self._answer(batcher, slot, batch))
        batcher.running.add(task)
        task.add_done_callback(batcher.running.discard)

    async def _answer(
        self, batcher: _LoopBatcher, slot: int, batch: dict[_Key, list[asyncio.Future[str | None]]]
    ) -> None:
        import psycopg

        keys = list(batch)
        try:
            etags = await asyncio.wait_for(self._query(batcher, slot, keys), self._query_timeout)
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
                        answer.set_exception(OperationalError(_BATCH_SQL, key, error))
        else:
            for key, answers in batch.items():
                etag = etags.get(key)
                for answer in answers:
                    if not answer.done():  # a request cancelled while it waited
                        answer.set_result(None if etag is None else quoted_etag(etag))
        finally:
            batcher.free_slots.append(slot)
            self._schedule_start(batcher)

    async def _query(self, batcher: _LoopBatcher, slot: int, keys: list[_Key]) -> dict[_Key, str]:
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
        namespaces, names = [key[0] for key in keys], [key[1] for key in keys]
        cursor = await connection.execute(_BATCH_SQL, (namespaces, names))
        return {(row[0], row[1]): str(row[2]) for row in await cursor.fetchall()}

    async def aclose(self) -> None:
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


def etag_lookup_for(engine: Engine) -> EtagLookup:
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return AsyncPostgresEtagLookup(conninfo)
    return DbapiEtagLookup(engine)


INDEX_PREFIX = "/api/v1/packages/"
INDEX_ROUTE = "/api/v1/packages/{ns}/{name}"


class ConditionalIndexMiddleware:
    """Answers the polling hit, `GET /api/v1/packages/{ns}/{name}` whose `If-None-Match`
    matches the current ETag, with 304 before the request reaches the router.

    That hit is nearly every request a registry serves (every deployment polls every package
    it has installed), and the router's matching, dependency and response machinery costs
    more than the one database lookup the answer needs. Everything else (no If-None-Match, a
    changed index, an invalid name, an unknown package, a database error) goes on to the
    route in `api/routes/packages.py`, which gives the same 304 or the full answer, so this
    is purely a shortcut.
    """

    def __init__(self, app: ASGIApp, lookup: EtagLookup, max_age: int) -> None:
        self.app = app
        self.lookup = lookup
        self.cache_control = f"public, max-age={max_age}, must-revalidate".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(INDEX_PREFIX) and await self._answered(scope, path, send):
                return
        await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, path: str, send: Send) -> bool:
        ns, slash, name = path[len(INDEX_PREFIX) :].partition("/")
        if not slash or not is_name_part(ns) or not is_name_part(name):
            return False
        if_none_match = next(
            (value for key, value in scope["headers"] if key == b"if-none-match"), None
        )
        if not if_none_match:
            return False
        try:
            etag = await self.lookup.fetch(ns, name)
        except OperationalError:
            return False  # the route answers 503 with the usual error body
        if etag is None or not etag_matches(if_none_match.decode("latin-1"), etag):
            return False
        scope["ppatch.route"] = INDEX_ROUTE  # for the metrics
        await send(
            {
                "type": "http.response.start",
                "status": 304,
                "headers": [(b"etag", etag.encode()), (b"cache-control", self.cache_control)],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True
