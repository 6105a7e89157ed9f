"""`ppatch-registry`: admin commands, schema checks, and errors as one line without traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

import patchfmt
from registry_server.cli import main
from registry_server.models import AuditEvent, SigningKey, Token
from tests.ports import port_from_log


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def home() -> Path:
    return Path(os.environ["PPATCH_REGISTRY_HOME"])


def db_url() -> str:
    return f"sqlite:///{home() / 'registry.db'}"


def count(model) -> int:
    engine = create_engine(db_url())
    with engine.connect() as connection:
        value = connection.execute(select(func.count()).select_from(model)).scalar_one()
    engine.dispose()
    return int(value)


@pytest.fixture
def key_file(tmp_path, signing_key) -> Path:
    path = tmp_path / "acme.pub"
    path.write_bytes(patchfmt.public_key_to_pem(signing_key.public_key()))
    return path


def test_vendor_setup_on_a_fresh_machine(capsys, key_file, signing_key) -> None:
    assert run(capsys, "namespace", "create", "acme")[0] == 0
    code, out, err = run(capsys, "token", "create", "acme", "--scope", "admin")
    assert code == 0
    token = out.strip()
    assert token.startswith("ppr_") and "shown only once" in err
    code, out, _ = run(capsys, "key", "add", "acme", str(key_file))
    key_id = patchfmt.key_id(signing_key.public_key())
    assert code == 0 and key_id in out
    assert run(capsys, "key", "revoke", "acme", key_id)[0] == 0
    token_id = token.split("_")[1]
    assert run(capsys, "token", "revoke", "acme", token_id)[0] == 0
    assert count(Token) == 1 and count(SigningKey) == 1
    engine = create_engine(db_url())
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT secret_hash, revoked_at FROM tokens")).one()
        actions = connection.execute(text("SELECT actor, action FROM audit_events")).all()
    engine.dispose()
    assert token not in stored[0] and stored[1] is not None
    assert [a for _, a in actions] == [
        "namespace.create", "token.create", "key.add", "key.revoke", "token.revoke"
    ]  # fmt: skip
    assert {actor for actor, _ in actions} == {"cli"}


def test_list_namespaces_tokens_and_keys(capsys, key_file, signing_key) -> None:
    import json

    assert run(capsys, "namespace", "list")[1:] == ("", "no namespaces\n")
    for namespace in ("beta", "acme"):
        assert run(capsys, "namespace", "create", namespace)[0] == 0
    token = run(capsys, "token", "create", "acme", "--scope", "yank", "--description", "ci")[1]
    token_id = token.strip().split("_")[1]
    assert run(capsys, "key", "add", "acme", str(key_file))[0] == 0
    key_id = patchfmt.key_id(signing_key.public_key())
    assert run(capsys, "key", "revoke", "acme", key_id)[0] == 0

    code, out, _ = run(capsys, "namespace", "list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["acme", "beta"]
    code, out, _ = run(capsys, "token", "list", "--json")
    [row] = json.loads(out)["tokens"]
    assert (row["token_id"], row["namespace"], row["scope"]) == (token_id, "acme", "yank")
    assert row["description"] == "ci" and row["revoked"] is None
    assert token.strip() not in out  # never the secret
    assert run(capsys, "token", "list", "beta")[1] == ""
    code, out, _ = run(capsys, "key", "list", "acme", "--json")
    [key] = json.loads(out)["keys"]
    assert key["key_id"] == key_id and key["revoked"] is not None
    code, out, _ = run(capsys, "key", "list")
    assert out.startswith(f"{key_id}  acme  ")
    code, _, err = run(capsys, "key", "list", "nobody")
    assert code == 4 and "namespace 'nobody' does not exist" in err


@pytest.mark.parametrize(
    ("argv", "exit_code", "fragment"),
    [
        (["namespace", "create", "Bad..Name"], 2, "invalid namespace name 'Bad..Name'"),
        (["namespace", "create", "acme"], 5, "already exists"),
        (["token", "create", "nobody"], 4, "namespace 'nobody' does not exist"),
        (["token", "create", "acme", "--scope", "root"], 2, "invalid choice: 'root'"),
        (["token", "revoke", "acme", "0123456789abcdef"], 4, "no token '0123456789abcdef'"),
        (["key", "add", "acme", "/no/such/key.pub"], 4, "no such file: '/no/such/key.pub'"),
        (["key", "add", "acme", "{bad_key}"], 2, "not an ed25519 public key"),
        (["key", "add", "acme", "{directory}"], 2, "is a directory"),
        (["key", "revoke", "acme", "ed25519:0000"], 4, "no key 'ed25519:0000'"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_admin_errors_are_one_line(capsys, tmp_path, argv, exit_code, fragment) -> None:
    assert run(capsys, "namespace", "create", "acme")[0] == 0
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key")
    argv = [a.format(bad_key=bad_key, directory=tmp_path) for a in argv]
    before = (count(Token), count(SigningKey), count(AuditEvent))
    if argv[0] == "frobnicate" or "--scope" in argv:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        code, err = exited.value.code, capsys.readouterr().err
    else:
        code, _, err = run(capsys, *argv)
    assert code == exit_code
    assert fragment in err
    assert "Traceback" not in err
    # One error line, the last (argparse puts its usage lines before it), in the CLI's own
    # format: checked against a fixed prefix, not against another piece of the same output.
    *_usage, last = err.strip().splitlines()
    assert re.fullmatch(r"ppatch-registry( [a-z]+)*: error: \S.*", last), err
    assert sum("error:" in line for line in err.splitlines()) == 1, err
    assert (count(Token), count(SigningKey), count(AuditEvent)) == before


def test_outdated_schema_is_refused_with_the_fix(capsys) -> None:
    assert run(capsys, "namespace", "create", "acme")[0] == 0
    engine = create_engine(db_url())
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    for argv in (["serve"], ["namespace", "create", "beta"]):
        code, _, err = run(capsys, *argv)
        assert code == 8
        assert "out of date" in err and "ppatch-registry db upgrade" in err
        assert "Traceback" not in err


def test_unknown_revision_is_refused(capsys) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    engine = create_engine(db_url())
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    code, _, err = run(capsys, "serve")
    assert code == 8 and "'ffff'" in err


def test_db_upgrade_and_current(capsys) -> None:
    assert run(capsys, "db", "current")[0:2] == (1, "empty\n")
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "revision 0003 (was empty)" in out
    assert run(capsys, "db", "current")[0:2] == (0, "current 0003\n")
    assert run(capsys, "db", "upgrade")[0] == 0  # idempotent


def test_fresh_postgres_is_not_migrated_by_serve(capsys, monkeypatch) -> None:
    from .conftest import _admin_sql, require_postgres

    require_postgres()
    name = "ppatch_cli_empty_" + os.urandom(4).hex()
    _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setenv(
            "PPATCH_REGISTRY_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1/{name}"
        )
        code, _, err = run(capsys, "serve")
        assert code == 8 and "schema is empty" in err and "db upgrade" in err
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_unreachable_database_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv(
        "PPATCH_REGISTRY_DATABASE_URL",
        "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1",
    )
    code, _, err = run(capsys, "namespace", "create", "acme")
    assert code == 6
    assert err.startswith("ppatch-registry: error: cannot use the database")
    assert len(err.strip().splitlines()) == 1


def test_invalid_setting_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PPATCH_REGISTRY_MAX_UPLOAD_BYTES", "lots")
    code, _, err = run(capsys, "db", "current")
    assert code == 2
    assert "PPATCH_REGISTRY_MAX_UPLOAD_BYTES" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_on_a_fresh_machine_needs_one_command(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_REGISTRY_")}
    env["PPATCH_REGISTRY_HOME"] = str(tmp_path / "fresh")
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:  # port 0: the server binds a port no one else holds
        process = subprocess.Popen(
            [sys.executable, "-m", "registry_server.cli", "serve", "--port", "0",
             "--log-level", "info"],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        port = port_from_log(log_path, lambda: process.poll() is None)
        deadline = time.monotonic() + 30  # a bound for a hung start, not a speed check
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer in 30 s"
                time.sleep(0.1)
        assert response.json() == {"status": "ok", "database": "ok"}
        assert (tmp_path / "fresh" / "registry.db").is_file()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
