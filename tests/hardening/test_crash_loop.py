"""kill -9 of `ppatch-registry serve` in the middle of an upload, ten times: after each restart
no partial release is visible, fsck finds at most the killed upload's own blob without a row
(blobs are stored before their row is committed), its temporary blob file or its upload spool
file; `fsck --repair --grace 0` removes exactly those and leaves fsck clean before the retry,
and the retried upload wins and leaves fsck clean."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx

import patchfmt
from registry_server.db import create_registry_engine
from registry_server.fsck import ProblemKind, check_registry
from registry_server.storage import LocalStorage
from tests.hardening import live_registry as live

ITERATIONS = 10
CHUNKS = 64


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.ppatch"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _slow_upload(
    url: str, token: str, data: bytes, sent: threading.Event, answers: list[int]
) -> None:
    """Send the upload in CHUNKS pieces with pauses, setting `sent` once every byte is out;
    the status of an answer, if one comes back, is appended to `answers`."""
    body, content_type = _multipart(data)
    step = len(body) // CHUNKS + 1

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), step):
            yield body[start : start + step]
            time.sleep(0.01)
        sent.set()

    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    with suppress(httpx.HTTPError):  # the server is killed under us: that is the point
        response = httpx.post(
            f"{url}/api/v1/packages/acme/toxicity/releases",
            content=pieces(),
            headers={**headers, "Content-Length": str(len(body))},
            timeout=10,
        )
        answers.append(response.status_code)


def _wait_for_spool_file(spool: Path, timeout: float = 10) -> None:
    """Until the server has begun this upload: its first act is to create the spool file the
    body streams into (registry_server/upload.py). A bound, not a speed check."""
    deadline = time.monotonic() + timeout
    while not any(spool.glob("upload-*")):
        assert time.monotonic() < deadline, "the server never began the upload"
        time.sleep(0.005)


def test_kill_9_mid_upload_leaves_nothing_partial(sqlite_url: str, tmp_path: Path) -> None:
    key = patchfmt.generate_private_key()
    token = live.prepare_registry(sqlite_url, key)
    rng = random.Random(20261128)
    registry = live.LiveRegistry(tmp_path / "home", sqlite_url)
    published: list[str] = []
    killed_after_body = 0
    orphans_removed = 0
    temporaries_removed = 0
    spool_removed = 0
    started = time.monotonic()
    engine = create_registry_engine(sqlite_url)
    storage = LocalStorage(registry.storage)
    spool = registry.home / "tmp"  # where serve streams upload bodies
    registry.start()
    try:
        for iteration in range(ITERATIONS):
            version = f"1.0.{iteration}"
            data = live.build_patch(key, version, seed=iteration, size=4000)  # ~130 KB
            sent = threading.Event()
            answers: list[int] = []
            upload = threading.Thread(
                target=_slow_upload, args=(registry.url, token, data, sent, answers)
            )
            upload.start()
            _wait_for_spool_file(spool)  # the marker: the server is inside the upload
            # Mostly mid-body; one time in four just after the last byte, mid-processing.
            after_body = rng.random() < 0.25
            if after_body:
                sent.wait(timeout=10)
            else:
                time.sleep(rng.uniform(0.0, 0.3))
            # The kill landed: it, not an earlier exit, ended the server...
            assert registry.kill() == -signal.SIGKILL, f"iteration {iteration}"
            upload.join(timeout=15)
            # ...before the server answered (mid-body, with 64 paced chunks, it cannot have).
            # Just after the last byte the server may finish first; such an iteration is
            # counted, and the kill did land mid-operation only when no answer came.
            if after_body:
                killed_after_body += not answers
            else:
                assert answers == [], f"iteration {iteration}: answered {answers} before the kill"

            registry.start()
            with httpx.Client(base_url=registry.url, timeout=10) as client:
                index = client.get("/api/v1/packages/acme/toxicity")
                listed = (
                    [r["version"] for r in index.json()["releases"]]
                    if index.status_code == 200
                    else []
                )
                assert index.status_code in (200, 404), index.text
                # A release is there whole (its blob hash-checks via fsck) or not at all.
                assert set(listed) <= {*published, version}
                # A kill between storing the blob and committing its row leaves that blob
                # orphaned, a kill mid-write its temporary file, and any kill the request's
                # spool file: all invisible, since no row means no index entry. Anything else
                # fsck finds is a failure.
                digest = hashlib.sha256(data).hexdigest()
                found = check_registry(engine, storage, spool)
                problems = [(p.kind, p.sha256) for p in found]
                orphaned = problems.count((ProblemKind.ORPHAN_BLOB, digest))
                strays = [name for kind, name in problems if kind is ProblemKind.STRAY_FILE]
                temporaries = [name for name in strays if Path(name).name.startswith(".upload-")]
                spooled = [name for name in strays if name.startswith("spool/upload-")]
                assert orphaned + len(temporaries) + len(spooled) == len(problems), (
                    f"iteration {iteration}: {problems}"
                )
                # No upload is in flight now, so a zero grace period is safe: the repair
                # removes exactly what fsck reported, and fsck is clean before the retry.
                repair = registry.fsck("--repair", "--grace", "0", "--json")
                report = json.loads(repair.stdout)
                assert repair.returncode == 0, repair.stdout + repair.stderr
                assert report["clean"] is True and report["kept"] == []
                assert sorted((r["kind"], r["name"]) for r in report["removed"]) == sorted(
                    (kind.value, name) for kind, name in problems
                )
                assert check_registry(engine, storage, spool) == [], f"iteration {iteration}"
                orphans_removed += orphaned
                temporaries_removed += len(temporaries)
                spool_removed += len(spooled)
                retry = live.publish(client, token, data)
                assert retry.status_code in (200, 201), retry.text
                assert check_registry(engine, storage, spool) == [], f"{iteration} retried"
                published.append(version)
                download = client.get(retry.json()["url"])
                assert download.status_code == 200 and download.content == data
        registry.kill()
        fsck = registry.fsck()  # the command itself, once, on the final state
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    finally:
        registry.kill()
        engine.dispose()
    assert list(spool.glob("*")) == []
    sys.stdout.write(
        f"\n{ITERATIONS} kill -9 iterations in {time.monotonic() - started:.1f} s, "
        f"{killed_after_body} after the whole body; fsck --repair removed {orphans_removed} "
        f"orphan blobs, {temporaries_removed} temporary blob files and {spool_removed} upload "
        "spool files\n"
    )
