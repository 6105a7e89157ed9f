"""`ppatch-registry`: serve the registry and administer it (namespaces, tokens, keys, schema).

Every command reads the same `PPATCH_REGISTRY_*` settings as the server. Errors are one line on
stderr and a non-zero exit code, never a traceback (set PPATCH_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from registry_server import __version__, admin, tuf_commands
from registry_server import fsck as fsck_module
from registry_server.config import Settings
from registry_server.db import create_registry_engine, session_factory
from registry_server.errors import ErrorCode, RegistryError
from registry_server.migrations import SchemaState, schema_state, upgrade
from registry_server.models import SCOPES

__all__ = ["app_from_environment", "build_parser", "main"]

# Exit codes follow the ppatch client's (ppatch.errors.ExitCode); fsck exits 1 on a problem.
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_UNAVAILABLE = 6
EXIT_FAILED = 8

_EXIT_FOR_CODE = {
    ErrorCode.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorCode.CONFLICT: EXIT_CONFLICT,
    ErrorCode.VERSION_EXISTS: EXIT_CONFLICT,
    ErrorCode.INVALID_REQUEST: EXIT_USAGE,
    ErrorCode.INVALID_SIGNATURE: 3,  # as the client's verification failures
}


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _grace_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid grace period {text!r}: not a number") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"invalid grace period {text!r}: expected seconds, 0 or more"
        )
    return value


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ready_engine(settings: Settings) -> Engine:
    """An engine on a schema at the newest revision. Only a fresh, empty SQLite database is
    migrated here (so `serve` is one command for a newcomer); anything else out of date is
    refused with the command that fixes it."""
    url = settings.resolved_database_url
    engine = create_registry_engine(url)
    state, revision = schema_state(engine)
    if state is SchemaState.CURRENT:
        return engine
    if state is SchemaState.EMPTY and _is_sqlite(url):
        upgrade(engine)
        return engine
    engine.dispose()
    if state is SchemaState.UNKNOWN:
        raise CommandError(
            f"the database schema is at revision {revision!r}, which this ppatch-registry "
            f"{__version__} does not know: upgrade ppatch-registry"
        )
    described = "empty" if state is SchemaState.EMPTY else f"out of date (revision {revision})"
    raise CommandError(
        f"the database schema is {described}: run `ppatch-registry db upgrade` first"
    )


def app_from_environment() -> FastAPI:
    """The app for `uvicorn --factory` (and for several `serve --workers`)."""
    from registry_server.main import create_app

    settings = Settings()
    app = create_app(settings, engine=ready_engine(settings))
    _freeze_startup_heap()
    return app


def _freeze_startup_heap() -> None:
    """Move everything built so far (modules, the app, its routes and schemas) out of the
    garbage collector's reach. They live as long as the process, yet every full collection
    walks them all, pausing the event loop; under load those pauses were the whole p99
    (benchmarks/registry.py; the figures are in docs/registry.md). The `gc.freeze()` recipe from
    the `gc` module's documentation."""
    gc.collect()
    gc.freeze()


def _connection_limits(settings: Settings) -> dict[str, Any]:
    """Uvicorn's settings that bound a slow or idle client (docs/registry.md, "Limits")."""
    from registry_server.request_limits import server_protocol

    return {
        "http": server_protocol(),
        "timeout_keep_alive": settings.keep_alive_timeout,
    }


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from registry_server.main import create_app

    engine = ready_engine(settings)
    if args.workers > 1:
        engine.dispose()
        uvicorn.run(
            "registry_server.cli:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            **_connection_limits(settings),
        )
        return 0
    app = create_app(settings, engine=engine)
    _freeze_startup_heap()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        **_connection_limits(settings),
    )
    return 0


def _db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    engine = create_registry_engine(settings.resolved_database_url)
    try:
        before, revision = schema_state(engine)
        if before is SchemaState.UNKNOWN:
            raise CommandError(
                f"the database schema is at revision {revision!r}, newer than this code knows"
            )
        upgrade(engine)
        _, after = schema_state(engine)
    finally:
        engine.dispose()
    print(f"database schema is at revision {after} (was {revision or 'empty'})")
    return 0


def _db_current(_args: argparse.Namespace, settings: Settings) -> int:
    engine = create_registry_engine(settings.resolved_database_url)
    try:
        state, revision = schema_state(engine)
    finally:
        engine.dispose()
    print(f"{state.value} {revision or ''}".strip())
    return 0 if state is SchemaState.CURRENT else 1


def _with_session(settings: Settings, action: Callable[[Session], str]) -> int:
    engine = ready_engine(settings)
    try:
        with session_factory(engine)() as session:
            message = action(session)
            session.commit()
    finally:
        engine.dispose()
    print(message)
    return 0


def _namespace_create(args: argparse.Namespace, settings: Settings) -> int:
    def act(session: Session) -> str:
        admin.create_namespace(session, args.namespace, admin.CLI_ACTOR)
        return f"created namespace {args.namespace}"

    return _with_session(settings, act)


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    def act(session: Session) -> str:
        issued = admin.create_token(
            session, args.namespace, args.scope, admin.CLI_ACTOR, args.description
        )
        print(
            f"created {args.scope} token {issued.token_id} for namespace {args.namespace}; "
            "it is shown only once:",
            file=sys.stderr,
        )
        return issued.value

    return _with_session(settings, act)


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    def act(session: Session) -> str:
        admin.revoke_token(session, args.namespace, args.token_id, admin.CLI_ACTOR)
        return f"revoked token {args.token_id}"

    return _with_session(settings, act)


def _when(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.replace(microsecond=0).isoformat()


def _print_rows(rows: list[dict[str, Any]], key: str, as_json: bool, columns: list[str]) -> None:
    """A table for people (one row a line, columns separated by two spaces) or JSON."""
    if as_json:
        print(json.dumps({key: rows}, indent=2, sort_keys=True))
        return
    if not rows:
        print(f"no {key}", file=sys.stderr)
    for row in rows:
        print("  ".join("-" if row[column] is None else str(row[column]) for column in columns))


def _query(settings: Settings, rows_of: Callable[[Session], list[dict[str, Any]]]) -> list[Any]:
    """Read-only: rows built inside one session, which is then closed without a commit."""
    engine = ready_engine(settings)
    try:
        with session_factory(engine)() as session:
            return rows_of(session)
    finally:
        engine.dispose()


def _namespace_list(args: argparse.Namespace, settings: Settings) -> int:
    def rows_of(session: Session) -> list[dict[str, Any]]:
        return [
            {"name": ns.name, "created": _when(ns.created_at)}
            for ns in admin.list_namespaces(session)
        ]

    _print_rows(_query(settings, rows_of), "namespaces", args.json, ["name", "created"])
    return 0


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    def rows_of(session: Session) -> list[dict[str, Any]]:
        return [
            {
                "token_id": token.id,
                "namespace": token.namespace.name,
                "scope": token.scope,
                "description": token.description,
                "created": _when(token.created_at),
                "revoked": _when(token.revoked_at),
            }
            for token in admin.list_tokens(session, args.namespace)
        ]

    columns = ["token_id", "namespace", "scope", "created", "revoked", "description"]
    _print_rows(_query(settings, rows_of), "tokens", args.json, columns)
    return 0


def _key_list(args: argparse.Namespace, settings: Settings) -> int:
    def rows_of(session: Session) -> list[dict[str, Any]]:
        return [
            {
                "key_id": key.key_id,
                "namespace": key.namespace.name,
                "created": _when(key.created_at),
                "revoked": _when(key.revoked_at),
            }
            for key in admin.list_keys(session, args.namespace)
        ]

    columns = ["key_id", "namespace", "created", "revoked"]
    _print_rows(_query(settings, rows_of), "keys", args.json, columns)
    return 0


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > admin.MAX_KEY_PEM_BYTES:
            raise CommandError(
                f"{str(path)!r} is {path.stat().st_size} bytes; an ed25519 PEM key is under 200",
                EXIT_USAGE,
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"no such file: {str(path)!r}", EXIT_NOT_FOUND) from None
    except IsADirectoryError:
        raise CommandError(f"{str(path)!r} is a directory, not a key file", EXIT_USAGE) from None


def _key_add(args: argparse.Namespace, settings: Settings) -> int:
    pem = _read_key_file(Path(args.public_key_file))

    def act(session: Session) -> str:
        key = admin.add_key(session, args.namespace, pem, admin.CLI_ACTOR)
        return f"added key {key.key_id} to namespace {args.namespace}"

    return _with_session(settings, act)


def _key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    def act(session: Session) -> str:
        admin.revoke_key(session, args.namespace, args.key_id, admin.CLI_ACTOR)
        return f"revoked key {args.key_id} of namespace {args.namespace}"

    return _with_session(settings, act)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppatch-registry", description="Serve and administer a ppatch registry.")
    parser.add_argument("--version", action="version", version=f"ppatch-registry {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser, required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(handler=_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        metavar="ACTION", parser_class=_Parser, required=True
    )
    db.add_parser("upgrade", help="migrate to the newest schema").set_defaults(handler=_db_upgrade)
    db.add_parser("current", help="show the schema revision").set_defaults(handler=_db_current)

    namespace = commands.add_parser("namespace", help="namespaces").add_subparsers(
        metavar="ACTION", parser_class=_Parser, required=True
    )
    create_ns = namespace.add_parser("create", help="create a namespace")
    create_ns.add_argument("namespace")
    create_ns.set_defaults(handler=_namespace_create)
    list_ns = namespace.add_parser("list", help="list the namespaces")
    list_ns.add_argument("--json", action="store_true", help="machine-readable output")
    list_ns.set_defaults(handler=_namespace_list)

    token = commands.add_parser("token", help="API tokens").add_subparsers(
        metavar="ACTION", parser_class=_Parser, required=True
    )
    create_token = token.add_parser("create", help="create a token (printed once)")
    create_token.add_argument("namespace")
    create_token.add_argument("--scope", choices=SCOPES, default="publish")
    create_token.add_argument("--description", default="")
    create_token.set_defaults(handler=_token_create)
    revoke_token = token.add_parser("revoke", help="revoke a token")
    revoke_token.add_argument("namespace")
    revoke_token.add_argument("token_id")
    revoke_token.set_defaults(handler=_token_revoke)
    list_tokens = token.add_parser("list", help="list tokens (ids and scopes, never secrets)")
    list_tokens.add_argument("namespace", nargs="?", help="only this namespace's tokens")
    list_tokens.add_argument("--json", action="store_true", help="machine-readable output")
    list_tokens.set_defaults(handler=_token_list)

    key = commands.add_parser("key", help="signing keys").add_subparsers(
        metavar="ACTION", parser_class=_Parser, required=True
    )
    add_key = key.add_parser("add", help="register a public key for a namespace")
    add_key.add_argument("namespace")
    add_key.add_argument("public_key_file")
    add_key.set_defaults(handler=_key_add)
    revoke_key = key.add_parser("revoke", help="revoke a key")
    revoke_key.add_argument("namespace")
    revoke_key.add_argument("key_id")
    revoke_key.set_defaults(handler=_key_revoke)
    list_keys = key.add_parser("list", help="list signing keys, revoked ones included")
    list_keys.add_argument("namespace", nargs="?", help="only this namespace's keys")
    list_keys.add_argument("--json", action="store_true", help="machine-readable output")
    list_keys.set_defaults(handler=_key_list)

    fsck = commands.add_parser("fsck", help="check that database rows and blobs agree")
    fsck.add_argument("--json", action="store_true", help="print a JSON report")
    fsck.add_argument(
        "--repair",
        action="store_true",
        help="first remove orphan blobs and temporary files older than the grace period "
        "(never a blob that has a row), then report what is left",
    )
    fsck.add_argument(
        "--grace",
        type=_grace_seconds,
        metavar="SECONDS",
        help="with --repair: keep anything written less than SECONDS ago (default "
        f"{fsck_module.DEFAULT_GRACE_SECONDS:g}), since another server process may be between "
        "storing a blob and committing its row right now; 0 only when no server is running",
    )
    fsck.set_defaults(handler=_fsck)
    tuf_commands.register(commands, _Parser)
    return parser


def _fsck(args: argparse.Namespace, settings: Settings) -> int:
    """One line per problem (or a JSON report), exit 1 when any; with `--repair`, first what
    was removed or kept."""
    if args.grace is not None and not args.repair:
        raise CommandError("--grace applies to --repair only: add --repair", EXIT_USAGE)
    grace = fsck_module.DEFAULT_GRACE_SECONDS if args.grace is None else float(args.grace)
    try:
        report = fsck_module.run_fsck(settings, repair=args.repair, grace_seconds=grace)
    except fsck_module.SchemaNotCurrentError as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for line in _fsck_lines(report):
            print(line)
    return EXIT_PROBLEMS if report.problems else 0


def _fsck_lines(report: fsck_module.FsckReport) -> list[str]:
    lines = []
    if report.repaired is not None:
        for item in report.repaired.removed:
            age = f"{item.age_seconds:g}"
            lines.append(f"removed {item.kind.value} {item.name}: last written {age} s ago")
        for item in report.repaired.kept:
            lines.append(
                f"kept {item.kind.value} {item.name}: last written {item.age_seconds:g} s "
                f"ago, within the {report.grace_seconds:g} s grace period"
            )
    lines.extend(problem.line() for problem in report.problems)
    if report.clean:
        lines.append(f"clean: database and {report.storage} agree")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(os.environ.get("PPATCH_DEBUG"))
    try:
        settings = Settings()
        return int(args.handler(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if debug:
            raise
        message, code = _describe(error)
        print(f"ppatch-registry: error: {message}", file=sys.stderr)
        return code


def _describe(error: Exception) -> tuple[str, int]:
    if isinstance(error, CommandError):
        return str(error), error.exit_code
    if isinstance(error, RegistryError):
        return error.message, _EXIT_FOR_CODE.get(error.code, EXIT_FAILED)
    if isinstance(error, OperationalError):
        reason = str(error.orig).strip().splitlines()[0] if error.orig else "no answer"
        return f"cannot use the database: {reason}", EXIT_UNAVAILABLE
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"PPATCH_REGISTRY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        )
        return f"invalid settings: {problems}", EXIT_USAGE
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}", EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
