"""Package indexes: the JSON of `GET /api/v1/packages/{ns}/{name}`, its ETag, and conditional
requests. The ETag is the package's `index_etag` column, renewed by every write to the package,
so answering `If-None-Match` costs one indexed lookup and no JSON."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload

from registry_server.models import Namespace, Package, Release
from registry_server.upload import blob_url
from registry_server.versions import version_key

__all__ = ["EtagLookup", "artifact_json", "build_index", "etag_matches", "quoted_etag"]


_ETAG_SQL = (
    "SELECT packages.index_etag FROM packages JOIN namespaces"
    " ON packages.namespace_id = namespaces.id"
    " WHERE namespaces.name = {0} AND packages.name = {0}"
)
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":1", "named": ":p"}


class EtagLookup:
    """The ETag lookup of the polling path, on one DB-API connection of its own.

    A package's index is polled far more often than it changes, and its 304 answer must cost
    about what the framework costs (benchmarks/registry.py). Going through SQLAlchemy's
    pool and statement layers costs several times the query itself, so this keeps one plain
    DB-API connection per calling thread (in a server, the event loop's thread; autocommit, so
    it never holds a transaction open) and reconnects after any database error. It holds no
    data: every call asks the database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        paramstyle = engine.dialect.paramstyle
        if paramstyle in ("numeric", "named"):
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
            driver.autocommit = True  # psycopg: no "idle in transaction" between polls
        return connection

    def __call__(self, namespace: str, name: str) -> str | None:
        """The package's ETag (quoted), or None when there is no such package."""
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
        """Close every connection this lookup opened (at application shutdown)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(Exception):
                connection.invalidate()


def quoted_etag(value: str) -> str:
    return f'"{value}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 `If-None-Match`: `*`, or any listed tag equal to `etag` under weak comparison."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(",")
    )


def artifact_json(artifact: Any) -> dict[str, Any]:
    return {
        "fingerprint": artifact.fingerprint,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "url": blob_url(artifact.sha256),
        "filename": artifact.filename,
        "key_id": artifact.key_id,
    }


def _timestamp(value: Any) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    text: str = value.replace(tzinfo=None).isoformat(timespec="seconds")
    return text + "Z"


def build_index(session: Session, namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The index JSON and its ETag, or None when there is no such package. Newest release first."""
    package = session.scalar(
        select(Package)
        .join(Namespace, Package.namespace_id == Namespace.id)
        .where(Namespace.name == namespace, Package.name == name)
        .options(selectinload(Package.releases).selectinload(Release.artifacts))
    )
    if package is None:
        return None
    releases = sorted(
        package.releases, key=lambda release: version_key(release.version), reverse=True
    )
    body = {
        "namespace": namespace,
        "name": name,
        "domain": package.domain,
        "summary": package.summary,
        "releases": [
            {
                "version": release.version,
                "yanked": release.yanked,
                "yanked_reason": release.yanked_reason,
                "created": _timestamp(release.created_at),
                "artifacts": [
                    artifact_json(artifact)
                    for artifact in sorted(release.artifacts, key=lambda a: a.fingerprint)
                ],
            }
            for release in releases
        ],
    }
    return body, quoted_etag(package.index_etag)
