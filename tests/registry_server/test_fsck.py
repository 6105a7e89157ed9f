"""`ppatch-registry fsck` on crafted corruption: orphan, missing, corrupt and stray blobs; and
`fsck --repair`, which removes old orphans and temporary files and nothing else."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry_server import cli
from registry_server.fsck import ProblemKind, check_registry, repair_registry
from registry_server.storage import LocalStorage, open_storage


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


# -- fsck --repair ----------------------------------------------------------------------------

HOURS_AGO = 2 * 3600


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def _temporary_file(acme: Any, name: str) -> Path:
    folder = Path(acme.settings.resolved_storage) / "sha256" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half a blob")
    return path


def _local_storage(acme: Any) -> LocalStorage:
    storage = open_storage(acme.settings.resolved_storage)
    assert isinstance(storage, LocalStorage)
    return storage


def test_repair_removes_only_old_orphans_and_temporary_files(
    acme: Any, make_patch: Callable[..., bytes]
) -> None:
    published = _published(acme, make_patch, 0)
    _age(_blob_path(acme, published), HOURS_AGO)  # old, but it has a row: never removed
    old_orphan = _orphan(acme, make_patch)
    _age(_blob_path(acme, old_orphan), HOURS_AGO)
    young_data = make_patch(seed=98, version="9.9.8")
    young_orphan = hashlib.sha256(young_data).hexdigest()
    _blob_path(acme, young_orphan).parent.mkdir(parents=True, exist_ok=True)
    _blob_path(acme, young_orphan).write_bytes(young_data)
    _age(_temporary_file(acme, ".upload-old1"), HOURS_AGO)
    _temporary_file(acme, ".upload-new1")
    not_a_blob = _temporary_file(acme, "notes.txt")  # the operator's, whatever it is
    _age(not_a_blob, HOURS_AGO)

    report = repair_registry(acme.engine, _local_storage(acme))

    assert sorted((r.kind, r.name) for r in report.removed) == sorted(
        [(ProblemKind.ORPHAN_BLOB, old_orphan), (ProblemKind.STRAY_FILE, "ab/.upload-old1")]
    )
    assert all(r.age_seconds >= HOURS_AGO - 60 for r in report.removed)
    assert sorted((r.kind, r.name) for r in report.kept) == sorted(
        [(ProblemKind.ORPHAN_BLOB, young_orphan), (ProblemKind.STRAY_FILE, "ab/.upload-new1")]
    )
    assert all(r.age_seconds < 60 for r in report.kept)
    assert _blob_path(acme, published).is_file() and not_a_blob.is_file()
    assert sorted(_problems(acme)) == sorted(
        [
            (ProblemKind.ORPHAN_BLOB, young_orphan),
            (ProblemKind.STRAY_FILE, "ab/.upload-new1"),
            (ProblemKind.STRAY_FILE, "ab/notes.txt"),
        ]
    )


def test_repair_never_touches_a_blob_with_a_row(
    acme: Any, make_patch: Callable[..., bytes]
) -> None:
    corrupt = _flipped_byte(acme, make_patch)
    missing = _missing(acme, make_patch)
    orphan = _orphan(acme, make_patch)
    report = repair_registry(acme.engine, _local_storage(acme), grace_seconds=0)
    assert [(r.kind, r.name) for r in report.removed] == [(ProblemKind.ORPHAN_BLOB, orphan)]
    assert report.kept == []
    assert _blob_path(acme, corrupt).is_file()  # corrupt with a row: the operator decides
    assert sorted(_problems(acme)) == sorted(
        [(ProblemKind.CORRUPT_BLOB, corrupt), (ProblemKind.MISSING_BLOB, missing)]
    )


@pytest.mark.parametrize("adoption", ["row_committed", "blob_rewritten"])
def test_repair_spares_an_orphan_adopted_after_the_listing(
    acme: Any, make_patch: Callable[..., bytes], adoption: str
) -> None:
    """An upload of the orphan's bytes between fsck's listing and its removal: the row lookup
    (row committed) or the second age reading (blob rewritten, row not yet committed) keeps it."""
    data = make_patch(seed=99, version="9.9.9")
    orphan = _orphan(acme, make_patch)
    _age(_blob_path(acme, orphan), HOURS_AGO)
    storage = _local_storage(acme)
    adopted: list[bool] = []

    def clock() -> float:
        if not adopted:  # first reading: the listing is done, the removal not yet
            adopted.append(True)
            if adoption == "row_committed":
                assert acme.upload(data).status_code == 201
            else:
                source = _blob_path(acme, orphan).with_name("source")
                source.write_bytes(data)
                storage.put(orphan, source)
                source.unlink()
        return time.time()

    report = repair_registry(acme.engine, storage, grace_seconds=60, now=clock)
    assert report.removed == []
    assert _blob_path(acme, orphan).is_file()
    if adoption == "row_committed":
        assert report.kept == [] and _problems(acme) == []
    else:
        assert [(r.kind, r.name) for r in report.kept] == [(ProblemKind.ORPHAN_BLOB, orphan)]


def test_repair_refuses_a_negative_grace(acme: Any) -> None:
    with pytest.raises(ValueError, match="grace period -1 s is negative"):
        repair_registry(acme.engine, _local_storage(acme), grace_seconds=-1)


def test_repair_on_s3_by_last_modified(
    acme: Any,
    make_patch: Callable[..., bytes],
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    storage = open_storage(f"s3://{bucket}/registry", endpoint_url=moto_endpoint)
    published = _published(acme, make_patch, 0)
    storage.put(published, _blob_path(acme, published))  # the row's blob, copied to S3
    orphan_data = make_patch(seed=99, version="9.9.9")
    orphan = hashlib.sha256(orphan_data).hexdigest()
    source = tmp_path / "orphan"
    source.write_bytes(orphan_data)
    storage.put(orphan, source)

    young = repair_registry(acme.engine, storage)  # just written: within the hour's grace
    assert young.removed == []
    assert [(r.kind, r.name) for r in young.kept] == [(ProblemKind.ORPHAN_BLOB, orphan)]

    later = repair_registry(acme.engine, storage, now=lambda: time.time() + HOURS_AGO)
    assert [(r.kind, r.name) for r in later.removed] == [(ProblemKind.ORPHAN_BLOB, orphan)]
    assert not storage.exists(orphan) and storage.exists(published)
    assert check_registry(acme.engine, storage) == []


def test_cli_repair_reports_what_it_removed_and_kept(
    acme: Any,
    make_patch: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _published(acme, make_patch, 0)
    orphan = _orphan(acme, make_patch)
    _temporary_file(acme, ".upload-z9")

    code, out, err = _run_cli(acme, monkeypatch, capsys, "--repair")
    assert (code, err) == (1, "")  # both are young: kept, and still reported
    lines = out.splitlines()
    assert any(
        line.startswith(f"kept orphan_blob {orphan}: last written ")
        and line.endswith("ago, within the 3600 s grace period")
        for line in lines
    ), out
    assert f"orphan_blob {orphan}: blob has no artifact row" in lines

    code, out, err = _run_cli(acme, monkeypatch, capsys, "--repair", "--grace", "0", "--json")
    report = json.loads(out)
    assert (code, err) == (0, "")
    assert report["clean"] is True and report["problems"] == []
    assert report["grace_seconds"] == 0
    assert {(r["kind"], r["name"]) for r in report["removed"]} == {
        ("orphan_blob", orphan),
        ("stray_file", "ab/.upload-z9"),
    }
    assert report["kept"] == []

    code, out, _ = _run_cli(acme, monkeypatch, capsys, "--repair", "--grace", "0")
    assert code == 0
    assert out.startswith("clean:")  # nothing left to remove: no removed/kept lines


def test_cli_grace_without_repair_is_a_usage_error(
    acme: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run_cli(acme, monkeypatch, capsys, "--grace", "10")
    assert (code, out) == (cli.EXIT_USAGE, "")
    assert err == "ppatch-registry: error: --grace applies to --repair only: add --repair\n"


@pytest.mark.parametrize(
    ("value", "why"), [("-1", "expected seconds, 0 or more"), ("nan", "expected seconds"),
                       ("soon", "not a number")],
)  # fmt: skip
def test_cli_refuses_a_bad_grace(value: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fsck", "--repair", "--grace", value])
    assert exit_.value.code == cli.EXIT_USAGE
    assert f"invalid grace period {value!r}: {why}" in capsys.readouterr().err


def _spool_file(acme: Any, name: str) -> Path:
    spool = acme.settings.home / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / name
    path.write_bytes(b"--boundary\r\nhalf a body")
    return path


def test_upload_spool_leftovers_are_reported_and_repaired(
    acme: Any, make_patch: Callable[..., bytes]
) -> None:
    """A killed request's spool file in $PPATCH_REGISTRY_HOME/tmp: a stray file when fsck is
    given the spool; removed by repair once older than the grace, kept while young."""
    _published(acme, make_patch, 0)
    spool = acme.settings.home / "tmp"
    old = _spool_file(acme, "upload-old")
    _age(old, HOURS_AGO)
    young = _spool_file(acme, "upload-young")
    assert _problems(acme) == []  # the store alone is fine
    storage = _local_storage(acme)
    assert sorted((p.kind, p.sha256) for p in check_registry(acme.engine, storage, spool)) == [
        (ProblemKind.STRAY_FILE, "spool/upload-old"),
        (ProblemKind.STRAY_FILE, "spool/upload-young"),
    ]
    report = repair_registry(acme.engine, storage, spool)
    assert [(r.kind, r.name) for r in report.removed] == [
        (ProblemKind.STRAY_FILE, "spool/upload-old")
    ]
    assert [(r.kind, r.name) for r in report.kept] == [
        (ProblemKind.STRAY_FILE, "spool/upload-young")
    ]
    assert not old.exists() and young.exists()


def test_cli_checks_and_repairs_this_machines_spool(
    acme: Any,
    make_patch: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _published(acme, make_patch, 0)
    _spool_file(acme, "upload-k1ll")
    code, out, _ = _run_cli(acme, monkeypatch, capsys)
    assert code == 1
    assert out == (
        "stray_file spool/upload-k1ll: upload spool file left by an interrupted request\n"
    )
    code, out, _ = _run_cli(acme, monkeypatch, capsys, "--repair", "--grace", "0")
    assert code == 0
    assert out.startswith("removed stray_file spool/upload-k1ll: last written ")
    assert out.splitlines()[-1].startswith("clean:")
