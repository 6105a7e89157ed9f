"""The upload path, as a pipeline of small steps:

1. `receive_upload`: stream the multipart body to a temporary file, enforcing the size limit
   while reading (Content-Length is checked first) and hashing in the same pass;
2. `parse_patch`: every check of `patchfmt.read_patch`;
3. `check_name`: the manifest's name is the one in the URL;
4. `check_signature`: signed by an active key of the namespace;
5. `existing_outcome`: the same version+fingerprint seen before (same bytes: no-op, else 409);
6. `store_blob`, then `record_release` in one transaction.

Any failure leaves neither a blob nor rows behind (`publish` cleans up after itself).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import patchfmt
from patchfmt.blob_paths import blob_url
from patchfmt.versions import is_prerelease, version_sort_key
from registry_server.admin import Actor, record_audit
from registry_server.context import Registry
from registry_server.errors import ErrorCode, RegistryError
from registry_server.free_text import json_text_problem
from registry_server.models import (
    Artifact,
    Namespace,
    Package,
    PublishedFile,
    Release,
    SigningKey,
)

__all__ = [
    "MULTIPART_OVERHEAD",
    "PublishResult",
    "ReceivedUpload",
    "artifact_filename",
    "check_name",
    "check_signature",
    "existing_outcome",
    "parse_patch",
    "publish",
    "receive_upload",
    "record_release",
]

# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
FILE_FIELD = "file"


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class PublishResult:
    created: bool
    body: dict[str, Any]


def _too_large(limit: int) -> RegistryError:
    return RegistryError(
        ErrorCode.PAYLOAD_TOO_LARGE, f"upload is larger than this registry's limit of {limit} bytes"
    )


def _bad_form(message: str) -> RegistryError:
    return RegistryError(ErrorCode.INVALID_REQUEST, message)


class _FormReceiver:
    """python-multipart callbacks that keep the one `file` part and refuse anything else."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out = out
        self.limit = limit
        self.digest = hashlib.sha256()
        self.size = 0
        self.files_seen = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False

    def on_part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("latin-1")
        if field != FILE_FIELD:
            raise _bad_form(
                f"unexpected form field {field[:40]!r}: send the .ppatch as the one field 'file'"
            )
        self.files_seen += 1
        if self.files_seen > 1:
            raise _bad_form("the form has more than one 'file' field; send one .ppatch at a time")
        self._in_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self.digest.update(chunk)
        self.out.write(chunk)

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise _bad_form(
            "expected a multipart/form-data body with the .ppatch in the field 'file' "
            f"(got Content-Type {request.headers.get('content-type', '')[:80]!r})"
        )
    return options[b"boundary"]


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise _bad_form(f"invalid Content-Length {declared[:40]!r}")
    return int(declared)


async def receive_upload(request: Request, *, limit: int, directory: Path) -> ReceivedUpload:
    """Stream the body's `file` part to a new file in `directory`; the caller removes it."""
    body_limit = limit + MULTIPART_OVERHEAD
    declared = _declared_length(request)
    if declared is not None and declared > body_limit:
        raise _too_large(limit)  # refused before reading a byte
    boundary = _boundary(request)
    descriptor, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            receiver = _FormReceiver(handle, limit)
            parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > body_limit:
                    raise _too_large(limit)
                try:
                    parser.write(chunk)
                except RegistryError:
                    raise
                except Exception as error:  # python-multipart raises several types
                    raise _bad_form(f"malformed multipart body: {error}") from None
            parser.finalize()
        if receiver.files_seen == 0:
            raise _bad_form("the form has no field 'file': send the .ppatch as 'file'")
        return ReceivedUpload(path, receiver.digest.hexdigest(), receiver.size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def parse_patch(upload: ReceivedUpload, registry: Registry) -> patchfmt.PatchFile:
    limits = patchfmt.ReadLimits(
        max_manifest_bytes=registry.settings.max_manifest_bytes,
        max_weights_bytes=registry.settings.max_upload_bytes,
    )
    # Bytes, not the path: the size is bounded by now, and error messages must not show the
    # server's temporary file name.
    try:
        patch = patchfmt.read_patch(upload.path.read_bytes(), limits)
    except patchfmt.PatchFormatError as error:
        raise RegistryError(ErrorCode.INVALID_PATCH, f"invalid .ppatch file: {error}") from None
    check_free_text(patch.manifest)
    return patch


def check_free_text(manifest: patchfmt.Manifest) -> None:
    """The manifest's free-form sections hold no control character (registry_server.free_text;
    its one-line fields are checked by patchfmt)."""
    for section in ("training", "evaluation"):
        problem = json_text_problem(getattr(manifest, section), f"manifest {section}")
        if problem:
            raise RegistryError(ErrorCode.INVALID_PATCH, f"invalid .ppatch file: {problem}")


def check_name(patch: patchfmt.PatchFile, namespace: str, name: str) -> None:
    expected = f"{namespace}/{name}"
    if patch.manifest.name != expected:
        raise RegistryError(
            ErrorCode.NAME_MISMATCH,
            f"the manifest names {patch.manifest.name!r} but this URL publishes {expected!r}",
        )


def check_version(patch: patchfmt.PatchFile) -> None:
    """Refuse build metadata: SemVer ignores it in precedence, so `1.2.0+b1` and `1.2.0+b2`
    would be two artifacts of one version, installed alike and escaping a yank of `1.2.0`."""
    version = patchfmt.parse_version(str(patch.manifest.version))
    if version.build:
        raise RegistryError(
            ErrorCode.INVALID_PATCH,
            f"version {str(version)!r} has build metadata ('+{'.'.join(version.build)}'); "
            "a registry version names one artifact per model: publish "
            f"{version.major}.{version.minor}.{version.patch}"
            + (f"-{'.'.join(version.prerelease)}" if version.prerelease else "")
            + " or a new version instead",
        )


def check_signature(session: Session, namespace: Namespace, patch: patchfmt.PatchFile) -> str:
    """The key id that verified the patch; only the namespace's active keys are trusted."""
    if patch.signature is None:
        raise RegistryError(
            ErrorCode.INVALID_SIGNATURE,
            "the file is unsigned; this registry accepts only patches signed by a key "
            f"registered to namespace {namespace.name!r}",
        )
    keys = session.scalars(select(SigningKey).where(SigningKey.namespace_id == namespace.id)).all()
    signer = patch.signature.key_id
    revoked = {key.key_id for key in keys if key.revoked_at is not None}
    if signer in revoked:
        raise RegistryError(
            ErrorCode.INVALID_SIGNATURE,
            f"the file is signed by key {signer!r}, which namespace {namespace.name!r} revoked",
        )
    trusted = {
        key.key_id: patchfmt.load_public_key(key.public_key_pem.encode("ascii"))
        for key in keys
        if key.revoked_at is None
    }
    if signer not in trusted:
        raise RegistryError(
            ErrorCode.INVALID_SIGNATURE,
            f"the file is signed by key {signer[:80]!r}, which is not registered to namespace "
            f"{namespace.name!r} (add it with `ppatch-registry key add`)",
        )
    try:
        return patchfmt.verify_patch(patch, trusted)
    except patchfmt.SignatureError as error:
        raise RegistryError(ErrorCode.INVALID_SIGNATURE, f"bad signature: {error}") from None


def artifact_filename(namespace: str, name: str, version: str, fingerprint: str) -> str:
    # One release may hold one artifact per fingerprint: a short fingerprint keeps names apart.
    short = fingerprint.removeprefix("sha256:")[:12]
    return f"{namespace}-{name}-{version}-{short}.ppatch"


def _body(
    namespace: str, name: str, version: str, fingerprint: str, sha256: str, size: int
) -> dict[str, Any]:
    return {
        "name": f"{namespace}/{name}",
        "version": version,
        "fingerprint": fingerprint,
        "sha256": sha256,
        "size": size,
        "url": blob_url(sha256),
    }


def existing_outcome(
    session: Session,
    namespace: str,
    name: str,
    version: str,
    fingerprint: str,
    upload: ReceivedUpload,
) -> PublishResult | None:
    """None when this version+fingerprint was never published; the no-op answer when these very
    bytes are live; `version_exists` when other bytes hold (or once held) it."""
    published = session.scalar(
        select(PublishedFile).where(
            PublishedFile.namespace == namespace,
            PublishedFile.package == name,
            PublishedFile.version == version,
            PublishedFile.fingerprint == fingerprint,
        )
    )
    if published is None:
        return None
    if hmac.compare_digest(published.sha256, upload.sha256):
        live = session.scalar(select(Artifact.id).where(Artifact.sha256 == upload.sha256))
        if live is not None:
            return PublishResult(
                False, _body(namespace, name, version, fingerprint, upload.sha256, upload.size)
            )
        raise RegistryError(
            ErrorCode.VERSION_EXISTS,
            f"{namespace}/{name} {version} for {fingerprint} was deleted; "
            "a deleted version is never reused: publish a new version",
        )
    raise RegistryError(
        ErrorCode.VERSION_EXISTS,
        f"{namespace}/{name} {version} for {fingerprint} already exists with other bytes "
        f"(sha256 {published.sha256}); versions are immutable: publish a new version",
    )


def record_release(
    session: Session,
    namespace: Namespace,
    name: str,
    patch: patchfmt.PatchFile,
    upload: ReceivedUpload,
    key_id: str,
    actor: Actor,
) -> dict[str, Any]:
    """Add the package (if new), the release (if new), the artifact and its ledger row."""
    manifest = patch.manifest
    version = str(manifest.version)
    fingerprint = manifest.base_model.fingerprint
    package = session.scalar(
        select(Package).where(Package.namespace_id == namespace.id, Package.name == name)
    )
    if package is None:
        package = Package(namespace_id=namespace.id, name=name, index_etag="")
        session.add(package)
        session.flush()
    release = session.scalar(
        select(Release).where(Release.package_id == package.id, Release.version == version)
    )
    if release is None:
        release = Release(package_id=package.id, version=version, prerelease=is_prerelease(version))
        session.add(release)
        session.flush()
    # The package's description follows its newest release.
    versions = session.scalars(select(Release.version).where(Release.package_id == package.id))
    if max(versions, key=version_sort_key) == version:
        package.domain = str(manifest.domain)
        package.summary = manifest.summary
    package.index_etag = secrets.token_hex(16)
    session.add(
        Artifact(
            release_id=release.id,
            fingerprint=fingerprint,
            sha256=upload.sha256,
            size=upload.size,
            filename=artifact_filename(namespace.name, name, version, fingerprint),
            key_id=key_id,
            manifest=manifest.model_dump(mode="json"),
            uploaded_by=actor.token_id,
        )
    )
    session.add(
        PublishedFile(
            namespace=namespace.name,
            package=name,
            version=version,
            fingerprint=fingerprint,
            sha256=upload.sha256,
        )
    )
    record_audit(
        session,
        actor,
        namespace.name,
        "release.upload",
        f"{namespace.name}/{name}@{version}",
        {"fingerprint": fingerprint, "sha256": upload.sha256, "size": upload.size},
    )
    session.flush()
    return _body(namespace.name, name, version, fingerprint, upload.sha256, upload.size)


def _blob_is_referenced(registry: Registry, sha256: str) -> bool:
    with registry.sessions() as session:
        count = session.scalar(select(func.count()).where(Artifact.sha256 == sha256))
        return bool(count)


def _discard_blob(registry: Registry, sha256: str, existed_before: bool) -> None:
    """Remove a blob this upload stored, unless an artifact row refers to it."""
    if existed_before:
        return
    try:
        referenced = _blob_is_referenced(registry, sha256)
    except Exception:
        referenced = False  # the database is down: the blob is ours, nothing can refer to it
    if not referenced:
        registry.storage.delete(sha256)


def publish(
    registry: Registry, namespace_name: str, name: str, upload: ReceivedUpload, actor: Actor
) -> PublishResult:
    """Validate, store and record one received upload (blocking: run it in a worker thread)."""
    patch = parse_patch(upload, registry)
    check_name(patch, namespace_name, name)
    check_version(patch)
    version = str(patch.manifest.version)
    fingerprint = patch.manifest.base_model.fingerprint
    with registry.sessions() as session:
        namespace = session.scalar(select(Namespace).where(Namespace.name == namespace_name))
        if namespace is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"namespace {namespace_name!r} does not exist")
        key_id = check_signature(session, namespace, patch)
        outcome = existing_outcome(session, namespace_name, name, version, fingerprint, upload)
        if outcome is not None:
            return outcome
    existed_before = registry.storage.exists(upload.sha256)
    registry.storage.put(upload.sha256, upload.path)
    try:
        result = _commit_release(registry, namespace_name, name, patch, upload, key_id, actor)
    except BaseException:
        _discard_blob(registry, upload.sha256, existed_before)
        raise
    # Until the row was committed the blob was an orphan, which `fsck --repair` (another
    # process) may have removed between its last look for the row and now. The upload file is
    # still here: store it again rather than leave a row without its blob.
    if not registry.storage.exists(upload.sha256):
        registry.storage.put(upload.sha256, upload.path)
    return result


def _commit_release(
    registry: Registry,
    namespace_name: str,
    name: str,
    patch: patchfmt.PatchFile,
    upload: ReceivedUpload,
    key_id: str,
    actor: Actor,
) -> PublishResult:
    version = str(patch.manifest.version)
    fingerprint = patch.manifest.base_model.fingerprint
    # A concurrent upload can win the race between our checks and our insert; the unique
    # constraints catch it. Then look again: the winner holds these bytes (a no-op for us),
    # other bytes (409), or only raced us on creating the package or release (try again).
    for _attempt in range(3):
        with registry.sessions() as session:
            namespace = session.scalar(select(Namespace).where(Namespace.name == namespace_name))
            assert namespace is not None
            try:
                body = record_release(session, namespace, name, patch, upload, key_id, actor)
                session.commit()
                return PublishResult(True, body)
            except IntegrityError:
                session.rollback()
            outcome = existing_outcome(session, namespace_name, name, version, fingerprint, upload)
            if outcome is not None:
                return outcome
    raise RegistryError(
        ErrorCode.CONFLICT,
        f"{namespace_name}/{name} {version} is being changed concurrently; retry",
    )
