"""`ppatch-registry fsck`: check that the database and the blob store agree.

Four kinds of problem are found: a blob with no artifact row (an upload that died between
storing its bytes and committing its row, or a row removed by hand), an artifact row whose blob
is missing, an artifact row whose blob's bytes no longer hash to the recorded sha256 (or have
another size), and a stray file: a temporary file of an interrupted blob write, an upload spool
file of this machine's `$PPATCH_REGISTRY_HOME/tmp` (a killed request's body), or anything else
that is not a blob. Every blob is re-hashed, so the check reads the whole store once.
Plain `fsck` changes nothing: it reports, the operator decides.

`fsck --repair` removes the leftovers that are safe to remove: orphan blobs, temporary files
and spool files, and only those last written longer ago than a grace period. The upload
path stores a blob before it commits the blob's row, so an orphan can be an upload that another
server process is finishing right now; every upload (re)writes its blob, which makes the blob
young again, so a grace period far longer than one upload (default one hour) protects it. A
blob with a row, a missing or corrupt blob, and a file that is not a blob are never touched.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from patchfmt.blob_paths import is_sha256_hex
from registry_server.config import Settings
from registry_server.db import create_registry_engine
from registry_server.migrations import SchemaState, schema_state
from registry_server.models import Artifact
from registry_server.storage import (
    BlobNotFoundError,
    BlobStorage,
    LocalStorage,
    S3Storage,
    open_storage,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "FsckProblem",
    "FsckReport",
    "ProblemKind",
    "RepairReport",
    "RepairedObject",
    "SchemaNotCurrentError",
    "StoredObject",
    "check_registry",
    "repair_registry",
    "run_fsck",
    "spool_objects",
    "stored_objects",
]

# Far longer than any upload takes between storing its blob and committing its row.
DEFAULT_GRACE_SECONDS = 3600.0


class ProblemKind(StrEnum):
    ORPHAN_BLOB = "orphan_blob"
    MISSING_BLOB = "missing_blob"
    CORRUPT_BLOB = "corrupt_blob"
    STRAY_FILE = "stray_file"


@dataclass(frozen=True)
class FsckProblem:
    kind: ProblemKind
    sha256: str
    detail: str

    def line(self) -> str:
        return f"{self.kind.value} {self.sha256}: {self.detail}"

    def as_json(self) -> dict[str, str]:
        return {**asdict(self), "kind": self.kind.value}


@dataclass(frozen=True)
class StoredObject:
    """One object found where blobs live: a blob (`reason` None, `name` its digest) or anything
    else (`name` its path or key below `sha256/`, `reason` what it is)."""

    name: str
    reason: str | None
    modified: float  # POSIX seconds of the last write
    temporary: bool = False  # a leftover temporary file of an interrupted write
    path: Path | None = None  # where it is, for a local file


_TEMPORARY_REASON = "temporary file left by an interrupted write"
_SPOOL_REASON = "upload spool file left by an interrupted request"


def stored_objects(storage: BlobStorage) -> Iterator[StoredObject]:
    """Every object in the store, blobs and anything else (sorted by name for local stores)."""
    if isinstance(storage, LocalStorage):
        yield from _local_objects(storage.root)
    elif isinstance(storage, S3Storage):
        yield from _s3_objects(storage)
    else:  # pragma: no cover - the two stores above are the only ones open_storage builds
        raise TypeError(f"fsck cannot list a {type(storage).__name__!r} store")


def _local_objects(root: Path) -> Iterator[StoredObject]:
    base = root / "sha256"
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        try:
            if not path.is_file():
                continue
            modified = path.stat().st_mtime
        except FileNotFoundError:  # renamed or removed by a live writer since the listing
            continue
        relative = str(path.relative_to(base))
        if is_sha256_hex(path.name) and path.parent.name == path.name[:2]:
            yield StoredObject(path.name, None, modified, path=path)
        elif path.name.startswith(".upload-"):
            yield StoredObject(relative, _TEMPORARY_REASON, modified, temporary=True, path=path)
        else:
            reason = "file that is not a blob (name is not its sha256)"
            yield StoredObject(relative, reason, modified, path=path)


def spool_objects(spool: Path) -> Iterator[StoredObject]:
    """The upload spool files in `spool` (`$PPATCH_REGISTRY_HOME/tmp`): a request streams its
    body there and removes the file when it ends, so a file is either an upload in progress
    or the leftover of a killed server. Named `spool/<file>`."""
    for path in sorted(spool.glob("upload-*")):
        try:
            if not path.is_file():
                continue
            modified = path.stat().st_mtime
        except FileNotFoundError:  # the request ended since the listing
            continue
        name = f"spool/{path.name}"
        yield StoredObject(name, _SPOOL_REASON, modified, temporary=True, path=path)


def _s3_prefix(storage: S3Storage) -> str:
    return f"{storage.prefix}/sha256/" if storage.prefix else "sha256/"


def _s3_objects(storage: S3Storage) -> Iterator[StoredObject]:
    # S3 writes are atomic (an object appears whole or not at all): no temporary objects.
    prefix = _s3_prefix(storage)
    paginator = storage._client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=storage.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = str(item["Key"])[len(prefix) :]
            modified = item["LastModified"].timestamp()
            if is_sha256_hex(name):
                yield StoredObject(name, None, modified)
            else:
                reason = "object that is not a blob (key is not its sha256)"
                yield StoredObject(name, reason, modified)


def _hash_blob(storage: BlobStorage, digest: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    for chunk in storage.read(digest):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def check_registry(
    engine: Engine, storage: BlobStorage, spool: Path | None = None
) -> list[FsckProblem]:
    """Every disagreement between the artifact rows and the stored blobs, and every upload
    spool file left in `spool` when given, sorted by digest (or name)."""
    with engine.connect() as connection:
        rows = connection.execute(select(Artifact.sha256, Artifact.size)).all()
    expected_sizes = {sha256: size for sha256, size in rows}
    problems: list[FsckProblem] = []
    seen: set[str] = set()
    for item in _objects(storage, spool):
        name = item.name
        if item.reason is not None:
            problems.append(FsckProblem(ProblemKind.STRAY_FILE, name, item.reason))
            continue
        seen.add(name)
        if name not in expected_sizes:
            problems.append(FsckProblem(ProblemKind.ORPHAN_BLOB, name, "blob has no artifact row"))
            continue
        problems.extend(_check_blob(storage, name, expected_sizes[name]))
    for sha256 in sorted(set(expected_sizes) - seen):
        problems.append(
            FsckProblem(ProblemKind.MISSING_BLOB, sha256, "artifact row has no blob in storage")
        )
    return sorted(problems, key=lambda problem: (problem.sha256, problem.kind.value))


def _check_blob(storage: BlobStorage, digest: str, expected_size: int) -> list[FsckProblem]:
    try:
        actual, size = _hash_blob(storage, digest)
    except BlobNotFoundError:  # deleted between listing and reading
        return [FsckProblem(ProblemKind.MISSING_BLOB, digest, "blob vanished while checking")]
    if actual != digest:
        return [FsckProblem(ProblemKind.CORRUPT_BLOB, digest, f"bytes hash to sha256 {actual!r}")]
    if size != expected_size:
        return [
            FsckProblem(
                ProblemKind.CORRUPT_BLOB,
                digest,
                f"blob is {size} bytes, the artifact row records {expected_size}",
            )
        ]
    return []


@dataclass(frozen=True)
class RepairedObject:
    """An orphan blob or temporary file that `--repair` removed, or kept because it was young."""

    kind: ProblemKind
    name: str
    age_seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "age_seconds": self.age_seconds}


@dataclass(frozen=True)
class RepairReport:
    removed: list[RepairedObject]
    kept: list[RepairedObject]  # younger than the grace period: maybe an upload in progress


def _has_row(engine: Engine, digest: str) -> bool:
    with engine.connect() as connection:
        found = connection.scalar(select(Artifact.sha256).where(Artifact.sha256 == digest))
    return found is not None


def _objects(storage: BlobStorage, spool: Path | None) -> Iterator[StoredObject]:
    yield from stored_objects(storage)
    if spool is not None:
        yield from spool_objects(spool)


def _modified_now(storage: BlobStorage, item: StoredObject) -> float | None:
    """The object's last write as of now (None when it is gone): an upload may have rewritten
    it since the listing, which makes it young again."""
    if item.path is not None:
        try:
            return item.path.stat().st_mtime
        except FileNotFoundError:
            return None
    assert isinstance(storage, S3Storage) and not item.temporary
    try:
        head = storage._call("lookup", item.name, storage._client.head_object)
    except BlobNotFoundError:
        return None
    return float(head["LastModified"].timestamp())


def _remove(storage: BlobStorage, item: StoredObject) -> None:
    if item.temporary:
        assert item.path is not None  # only local files are temporary
        item.path.unlink(missing_ok=True)
    else:
        storage.delete(item.name)


def repair_registry(
    engine: Engine,
    storage: BlobStorage,
    spool: Path | None = None,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    now: Callable[[], float] = time.time,
) -> RepairReport:
    """Remove orphan blobs and temporary files (of the store, and upload spool files in
    `spool` when given) last written at least `grace_seconds` ago.

    The store is listed before the rows are read, so a blob whose row was committed before the
    listing ends is never a candidate. Right before each removal the row is looked up and the
    age read again: an upload that adopted the orphan meanwhile rewrote it (young again) or
    committed its row (no longer an orphan), and either keeps it.
    """
    if grace_seconds < 0:
        raise ValueError(f"grace period {grace_seconds!r} s is negative: expected 0 or more")
    listed = list(_objects(storage, spool))
    with engine.connect() as connection:
        rows = set(connection.scalars(select(Artifact.sha256)).all())
    removed: list[RepairedObject] = []
    kept: list[RepairedObject] = []
    for item in listed:
        if item.temporary:
            kind = ProblemKind.STRAY_FILE
        elif item.reason is None and item.name not in rows:
            kind = ProblemKind.ORPHAN_BLOB
        else:
            continue  # a blob with a row, or a file that is not a blob: the operator's call
        age = now() - item.modified
        if age >= grace_seconds:
            if kind is ProblemKind.ORPHAN_BLOB and _has_row(engine, item.name):
                continue
            modified = _modified_now(storage, item)
            if modified is None:
                continue
            age = now() - modified
        if age < grace_seconds:
            kept.append(RepairedObject(kind, item.name, round(age, 1)))
            continue
        _remove(storage, item)
        removed.append(RepairedObject(kind, item.name, round(age, 1)))
    return RepairReport(removed, kept)


class SchemaNotCurrentError(Exception):
    """The database schema is not at the newest revision, so its rows cannot be trusted."""


@dataclass(frozen=True)
class FsckReport:
    """What `run_fsck` found (and, with repair, removed or kept), for the CLI to show."""

    problems: list[FsckProblem]
    storage: str  # the store checked, in words
    repaired: RepairReport | None = None
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "clean": self.clean,
            "problems": [problem.as_json() for problem in self.problems],
        }
        if self.repaired is not None:
            report["grace_seconds"] = self.grace_seconds
            report["removed"] = [item.as_json() for item in self.repaired.removed]
            report["kept"] = [item.as_json() for item in self.repaired.kept]
        return report


def run_fsck(
    settings: Settings, *, repair: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS
) -> FsckReport:
    """Check the registry that `settings` name; with `repair`, first remove old orphan blobs
    and temporary files, then check what is left. Raises `SchemaNotCurrentError` before
    touching anything when the schema is not current."""
    engine = create_registry_engine(settings.resolved_database_url)
    try:
        state, revision = schema_state(engine)
        if state is not SchemaState.CURRENT:
            raise SchemaNotCurrentError(
                f"the database schema is {state.value} (revision {revision or 'none'}); "
                "fsck checks a current schema: run `ppatch-registry db upgrade` first"
            )
        storage = open_storage(
            settings.resolved_storage,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
        # This machine's spool only: each server process spools uploads under its own home.
        spool = settings.home / "tmp"
        repaired = (
            repair_registry(engine, storage, spool, grace_seconds=grace_seconds) if repair else None
        )
        problems = check_registry(engine, storage, spool)
    finally:
        engine.dispose()
    return FsckReport(problems, storage.describe(), repaired, grace_seconds)
