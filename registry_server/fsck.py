"""`ppatch-registry fsck`: check that the database and the blob store agree.

Three kinds of problem are found: a blob with no artifact row (an upload that died between
storing its bytes and committing its row, or a row removed by hand), an artifact row whose blob
is missing, and an artifact row whose blob's bytes no longer hash to the recorded sha256 (or
have another size). Every blob is re-hashed, so the check reads the whole store once.
Nothing is changed: fsck reports, the operator decides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

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
    "EXIT_PROBLEMS",
    "FsckProblem",
    "ProblemKind",
    "check_registry",
    "run_fsck",
    "stored_digests",
]

EXIT_PROBLEMS = 1
_DIGEST = re.compile(r"[0-9a-f]{64}")


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


def stored_digests(storage: BlobStorage) -> Iterator[tuple[str, str | None]]:
    """Every object in the store: (digest, None) for a blob, (name, reason) for anything else
    found where blobs live (a leftover temporary file, a file under the wrong name)."""
    if isinstance(storage, LocalStorage):
        yield from _local_digests(storage.root)
    elif isinstance(storage, S3Storage):
        yield from _s3_digests(storage)
    else:  # pragma: no cover - the two stores above are the only ones open_storage builds
        raise TypeError(f"fsck cannot list a {type(storage).__name__!r} store")


def _local_digests(root: Path) -> Iterator[tuple[str, str | None]]:
    base = root / "sha256"
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        if not path.is_file():
            continue
        relative = str(path.relative_to(base))
        if _DIGEST.fullmatch(path.name) and path.parent.name == path.name[:2]:
            yield path.name, None
        elif path.name.startswith(".upload-"):
            yield relative, "temporary file left by an interrupted write"
        else:
            yield relative, "file that is not a blob (name is not its sha256)"


def _s3_digests(storage: S3Storage) -> Iterator[tuple[str, str | None]]:
    prefix = f"{storage.prefix}/sha256/" if storage.prefix else "sha256/"
    paginator = storage._client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=storage.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = str(item["Key"])[len(prefix) :]
            if _DIGEST.fullmatch(name):
                yield name, None
            else:
                yield name, "object that is not a blob (key is not its sha256)"


def _hash_blob(storage: BlobStorage, digest: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    for chunk in storage.read(digest):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def check_registry(engine: Engine, storage: BlobStorage) -> list[FsckProblem]:
    """Every disagreement between the artifact rows and the stored blobs, sorted by digest."""
    with engine.connect() as connection:
        rows = connection.execute(select(Artifact.sha256, Artifact.size)).all()
    expected_sizes = {sha256: size for sha256, size in rows}
    problems: list[FsckProblem] = []
    seen: set[str] = set()
    for name, reason in stored_digests(storage):
        if reason is not None:
            problems.append(FsckProblem(ProblemKind.STRAY_FILE, name, reason))
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


def run_fsck(args: Any, settings: Settings) -> int:
    """The `fsck` command: one line per problem (or a JSON report), exit 1 when any."""
    from registry_server.cli import CommandError  # the CLI imports this module's handler

    engine = create_registry_engine(settings.resolved_database_url)
    try:
        state, revision = schema_state(engine)
        if state is not SchemaState.CURRENT:
            raise CommandError(
                f"the database schema is {state.value} (revision {revision or 'none'}); "
                "fsck checks a current schema: run `ppatch-registry db upgrade` first"
            )
        storage = open_storage(
            settings.resolved_storage,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
        problems = check_registry(engine, storage)
    finally:
        engine.dispose()
    if args.json:
        report = {"clean": not problems, "problems": [p.as_json() for p in problems]}
        print(json.dumps(report, indent=2))
    else:
        for problem in problems:
            print(problem.line())
        if not problems:
            print(f"clean: database and {storage.describe()} agree")
    return EXIT_PROBLEMS if problems else 0
