"""`ppatch-registry fsck` on crafted corruption: orphan, missing, corrupt and stray blobs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry_server import cli
from registry_server.fsck import ProblemKind, check_registry
from registry_server.storage import open_storage


def _blob_path(harness: Any, digest: str) -> Path:
    return Path(harness.settings.resolved_storage) / "sha256" / digest[:2] / digest


def _published(acme: Any, make_patch: Callable[..., bytes], seed: int = 0) -> str:
    data = make_patch(seed=seed, version=f"1.0.{seed}")
    response = acme.upload(data)
    assert response.status_code == 201, response.text
    return hashlib.sha256(data).hexdigest()


def _problems(harness: Any) -> list[tuple[ProblemKind, str]]:
    storage = open_storage(harness.settings.resolved_storage)
    return [(p.kind, p.sha256) for p in check_registry(harness.engine, storage)]


def _run_cli(
    harness: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("PPATCH_REGISTRY_DATABASE_URL", harness.settings.resolved_database_url)
    monkeypatch.setenv("PPATCH_REGISTRY_STORAGE", harness.settings.resolved_storage)
    monkeypatch.setenv("PPATCH_REGISTRY_HOME", str(harness.settings.home))
    code = cli.main(["fsck", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_published_registry_is_clean(acme: Any, make_patch: Callable[..., bytes]) -> None:
    _published(acme, make_patch, 0)
    _published(acme, make_patch, 1)
    assert _problems(acme) == []


def _orphan(acme: Any, make_patch: Callable[..., bytes]) -> str:
    data = make_patch(seed=99, version="9.9.9")
    digest = hashlib.sha256(data).hexdigest()
    path = _blob_path(acme, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _missing(acme: Any, make_patch: Callable[..., bytes]) -> str:
    digest = _published(acme, make_patch, 2)
    _blob_path(acme, digest).unlink()
    return digest


def _flipped_byte(acme: Any, make_patch: Callable[..., bytes]) -> str:
    digest = _published(acme, make_patch, 3)
    path = _blob_path(acme, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return digest


def _truncated(acme: Any, make_patch: Callable[..., bytes]) -> str:
    digest = _published(acme, make_patch, 4)
    path = _blob_path(acme, digest)
    path.write_bytes(path.read_bytes()[:100])
    return digest


def _temporary(acme: Any, make_patch: Callable[..., bytes]) -> str:
    _published(acme, make_patch, 5)
    folder = Path(acme.settings.resolved_storage) / "sha256" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".upload-x1y2").write_bytes(b"half a blob")
    return "ab/.upload-x1y2"


@pytest.mark.parametrize(
    ("corrupt", "kind"),
    [
        (_orphan, ProblemKind.ORPHAN_BLOB),
        (_missing, ProblemKind.MISSING_BLOB),
        (_flipped_byte, ProblemKind.CORRUPT_BLOB),
        (_truncated, ProblemKind.CORRUPT_BLOB),
        (_temporary, ProblemKind.STRAY_FILE),
    ],
)
def test_each_corruption_is_reported_once(
    acme: Any,
    make_patch: Callable[..., bytes],
    corrupt: Callable[[Any, Callable[..., bytes]], str],
    kind: ProblemKind,
) -> None:
    _published(acme, make_patch, 0)  # a healthy neighbour that must not be reported
    name = corrupt(acme, make_patch)
    assert _problems(acme) == [(kind, name)]


def test_cli_exit_codes_lines_and_json(
    acme: Any,
    make_patch: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _published(acme, make_patch, 0)
    code, out, err = _run_cli(acme, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out.startswith("clean:")

    orphan = _orphan(acme, make_patch)
    missing = _missing(acme, make_patch)
    code, out, _ = _run_cli(acme, monkeypatch, capsys)
    assert code == 1
    assert sorted(out.splitlines()) == sorted(
        [
            f"orphan_blob {orphan}: blob has no artifact row",
            f"missing_blob {missing}: artifact row has no blob in storage",
        ]
    )

    code, out, _ = _run_cli(acme, monkeypatch, capsys, "--json")
    report = json.loads(out)
    assert code == 1
    assert report["clean"] is False
    assert {(p["kind"], p["sha256"]) for p in report["problems"]} == {
        ("orphan_blob", orphan),
        ("missing_blob", missing),
    }


def test_cli_refuses_an_unmigrated_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PPATCH_REGISTRY_HOME", str(tmp_path))
    monkeypatch.setenv("PPATCH_REGISTRY_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code = cli.main(["fsck"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    assert captured.out == ""
    assert captured.err.startswith("ppatch-registry: error: the database schema is empty")
    assert "db upgrade" in captured.err
