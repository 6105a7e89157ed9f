"""The ETag lookup of the polling path: what a 304 answer to `If-None-Match` costs.

A package's index is polled far more often than it changes, and its 304 answer must cost about
what the framework costs (benchmarks/registry.py). The lookup runs one fixed SQL statement
beside SQLAlchemy's pool (registry_server.direct_sql): inline on SQLite, batched on psycopg
async connections on PostgreSQL. It holds no data: every call asks the database, so any number
of processes agree.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from patchfmt.names import is_name_part
from registry_server.direct_sql import AsyncPostgresBatcher, DbapiStatement, postgres_conninfo
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


class EtagLookup(Protocol):
    async def fetch(self, namespace: str, name: str) -> str | None:
        """The package's ETag (quoted), or None when there is no such package."""

    async def aclose(self) -> None:
        """Close the connections opened for the running event loop (at shutdown)."""


class DbapiEtagLookup:
    """One DB-API connection per calling thread, queried synchronously."""

    def __init__(self, engine: Engine) -> None:
        self._statement = DbapiStatement(engine, _ETAG_SQL)

    def lookup(self, namespace: str, name: str) -> str | None:
        row = self._statement.fetchone((namespace, name))
        return None if row is None else quoted_etag(str(row[0]))

    async def fetch(self, namespace: str, name: str) -> str | None:
        return self.lookup(namespace, name)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._statement.close()


_BATCH_SQL = (
    "SELECT namespaces.name, packages.name, packages.index_etag"
    " FROM unnest(%s::text[], %s::text[]) AS wanted(namespace, name)"
    " JOIN namespaces ON namespaces.name = wanted.namespace"
    " JOIN packages ON packages.namespace_id = namespaces.id AND packages.name = wanted.name"
)

_Key = tuple[str, str]


class AsyncPostgresEtagLookup(AsyncPostgresBatcher[_Key, str]):
    """The ETags of every package asked for while the last query ran, in one query."""

    def __init__(
        self,
        conninfo: str,
        *,
        connections: int = 2,
        connect_timeout: int = 5,
        query_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            conninfo,
            _BATCH_SQL,
            connections=connections,
            connect_timeout=connect_timeout,
            query_timeout=query_timeout,
        )

    async def fetch(self, namespace: str, name: str) -> str | None:
        etag = await self.fetch_key((namespace, name))
        return None if etag is None else quoted_etag(etag)

    async def _select(self, connection: Any, keys: list[_Key]) -> dict[_Key, str]:
        namespaces, names = [key[0] for key in keys], [key[1] for key in keys]
        cursor = await connection.execute(_BATCH_SQL, (namespaces, names))
        return {(row[0], row[1]): str(row[2]) for row in await cursor.fetchall()}


def etag_lookup_for(engine: Engine) -> EtagLookup:
    conninfo = postgres_conninfo(engine)
    if conninfo is not None:
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
