"""The upload pipeline's steps one at a time (`registry_server.upload`), below the HTTP layer.

`receive_upload` gets a Starlette request built from raw ASGI messages, so the body's bytes, its
chunking and its headers are exactly what each test says; the size limits are checked at their
boundaries (`limit` bytes of file, `limit + 64 KiB` of body). The later steps run against a real
registry on a clean database (the `acme` harness) with files written by `build_patch`. Every
refusal is checked by its full message: the registry promises one clear line per problem. The
same paths through HTTP are tests/registry_server/test_upload.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

import patchfmt
from registry_server import upload
from registry_server.admin import CLI_ACTOR, Actor
from registry_server.errors import ErrorCode, RegistryError
from registry_server.models import (
    Artifact,
    AuditEvent,
    Namespace,
    Package,
    PublishedFile,
    Release,
    SigningKey,
)
from registry_server.upload import ReceivedUpload, receive_upload
from tests.registry_server.conftest import FP_A, FP_B, build_patch

BOUNDARY = "b0undary"
LIMIT = 10
BODY_LIMIT = LIMIT + 64 * 1024  # the documented room for multipart framing


# -- receiving: a request made of raw ASGI messages ---------------------------------------------


class _Body:
    """The ASGI `receive` of a request whose body arrives in `chunks`; counts the reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        if not self.chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


def _form(
    content: bytes,
    *,
    field: str | None = "file",
    epilogue: bytes = b"",
    parts: int = 1,
    type_first: bool = False,
) -> bytes:
    """A multipart body of `parts` parts named `field` (no name at all for None), each holding
    `content` with a Content-Type header after its Content-Disposition (before, `type_first`)."""
    name = "" if field is None else f'; name="{field}"'
    disposition = f'Content-Disposition: form-data{name}; filename="p.ppatch"\r\n'
    content_type = "Content-Type: application/octet-stream\r\n"
    headers = content_type + disposition if type_first else disposition + content_type
    part = f"--{BOUNDARY}\r\n{headers}\r\n".encode() + content
    return b"\r\n".join([part] * parts) + f"\r\n--{BOUNDARY}--\r\n".encode() + epilogue


def _receive(
    tmp_path: Path,
    body: bytes,
    *,
    chunk: int | None = None,
    headers: dict[str, str] | None = None,
    reader: _Body | None = None,
) -> ReceivedUpload:
    size = chunk or max(len(body), 1)
    receive = reader or _Body([body[i : i + size] for i in range(0, len(body), size)])
    given = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    given.update(headers or {})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in given.items()],
    }
    request = Request(scope, receive)
    return asyncio.run(receive_upload(request, limit=LIMIT, directory=tmp_path))


def _refused(tmp_path: Path, body: bytes, **kwargs: Any) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        _receive(tmp_path, body, **kwargs)
    assert list(tmp_path.iterdir()) == []  # the spool file is gone
    return caught.value


@pytest.mark.parametrize("chunk", [1, 3, None], ids=["bytewise", "3-byte", "whole"])
def test_the_file_part_is_spooled_hashed_and_counted(tmp_path: Path, chunk: int | None) -> None:
    content = b"0123456789"  # exactly LIMIT bytes: the limit is inclusive
    received = _receive(tmp_path, _form(content), chunk=chunk)
    assert received.sha256 == hashlib.sha256(content).hexdigest()
    assert received.size == 10
    assert received.path.read_bytes() == content
    # In the spool directory, under the prefix `fsck --repair` sweeps.
    assert received.path.parent == tmp_path
    assert received.path.name.startswith("upload-")


@pytest.mark.parametrize("chunk", [1, None], ids=["bytewise", "whole"])
def test_the_part_headers_may_come_in_any_order(tmp_path: Path, chunk: int | None) -> None:
    received = _receive(tmp_path, _form(b"abc", type_first=True), chunk=chunk)
    assert received.sha256 == hashlib.sha256(b"abc").hexdigest()


def test_one_byte_over_the_file_limit_is_413(tmp_path: Path) -> None:
    error = _refused(tmp_path, _form(b"0123456789X"), chunk=4)
    assert (error.code, error.status) == (ErrorCode.PAYLOAD_TOO_LARGE, 413)
    assert error.message == "upload is larger than this registry's limit of 10 bytes"


def test_a_declared_length_over_the_body_limit_is_refused_before_reading(tmp_path: Path) -> None:
    reader = _Body([_form(b"x")])
    error = _refused(tmp_path, b"", reader=reader, headers={"content-length": str(BODY_LIMIT + 1)})
    assert error.message == "upload is larger than this registry's limit of 10 bytes"
    assert reader.reads == 0


def test_a_declared_length_at_the_body_limit_is_read(tmp_path: Path) -> None:
    received = _receive(tmp_path, _form(b"x"), headers={"content-length": str(BODY_LIMIT)})
    assert received.path.read_bytes() == b"x"


def test_a_streamed_body_is_bounded_at_limit_plus_the_framing_room(tmp_path: Path) -> None:
    # No Content-Length: the body's bytes are counted as they arrive. The epilogue after the
    # closing boundary is ignored by the parser but counts towards the body.
    base = _form(b"x")
    exact = _form(b"x", epilogue=b"e" * (BODY_LIMIT - len(base)))
    assert len(exact) == 65546
    assert _receive(tmp_path, exact, chunk=4096).size == 1
    for path in tmp_path.iterdir():
        path.unlink()
    error = _refused(tmp_path, exact + b"e", chunk=4096)
    assert error.message == "upload is larger than this registry's limit of 10 bytes"


@pytest.mark.parametrize(
    ("length", "message"),
    [
        ("12a", "invalid Content-Length '12a'"),
        ("-1", "invalid Content-Length '-1'"),
        ("9" * 39 + "z" * 20, f"invalid Content-Length '{'9' * 39}z'"),
    ],
)
def test_a_malformed_content_length_is_400(tmp_path: Path, length: str, message: str) -> None:
    error = _refused(tmp_path, _form(b"x"), headers={"content-length": length})
    assert (error.code, error.status, error.message) == (ErrorCode.INVALID_REQUEST, 400, message)


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("application/octet-stream", "'application/octet-stream'"),
        ("multipart/form-data", "'multipart/form-data'"),
        ("multipart/form-data; boundary=", "'multipart/form-data; boundary='"),
        ("text/plain; q=" + "x" * 100, repr(("text/plain; q=" + "x" * 100)[:80])),
    ],
)
def test_a_body_that_is_not_a_multipart_form_is_400(
    tmp_path: Path, content_type: str, shown: str
) -> None:
    error = _refused(tmp_path, _form(b"x"), headers={"content-type": content_type})
    assert error.code == ErrorCode.INVALID_REQUEST
    assert error.message == (
        "expected a multipart/form-data body with the .ppatch in the field 'file' "
        f"(got Content-Type {shown})"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _form(b"x", field="other"),
            "unexpected form field 'other': send the .ppatch as the one field 'file'",
        ),
        (
            _form(b"x", field="f" * 50),
            f"unexpected form field {'f' * 40!r}: send the .ppatch as the one field 'file'",
        ),
        (
            _form(b"x", field=None),
            "unexpected form field '': send the .ppatch as the one field 'file'",
        ),
        (
            _form(b"x", parts=2),
            "the form has more than one 'file' field; send one .ppatch at a time",
        ),
        (
            f"--{BOUNDARY}--\r\n".encode(),
            "the form has no field 'file': send the .ppatch as 'file'",
        ),
    ],
    ids=["other-field", "long-field", "no-name", "two-files", "no-file"],
)
def test_a_form_without_exactly_one_file_field_is_400(
    tmp_path: Path, body: bytes, message: str
) -> None:
    for chunk in (1, None):
        error = _refused(tmp_path, body, chunk=chunk)
        assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, message)


def test_a_body_without_a_content_type_is_400(tmp_path: Path) -> None:
    reader = _Body([_form(b"x")])
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": []}
    with pytest.raises(RegistryError) as caught:
        asyncio.run(receive_upload(Request(scope, reader), limit=LIMIT, directory=tmp_path))
    assert caught.value.message == (
        "expected a multipart/form-data body with the .ppatch in the field 'file' "
        "(got Content-Type '')"
    )


def test_each_part_is_judged_by_its_own_headers(tmp_path: Path) -> None:
    # The file, then a part with no Content-Disposition at all: that part has no name, whatever
    # the part before it was called.
    second = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx".encode()
    body = _form(b"abc").replace(
        f"--{BOUNDARY}--".encode(), second + f"\r\n--{BOUNDARY}--".encode()
    )
    error = _refused(tmp_path, body)
    assert error.message == "unexpected form field '': send the .ppatch as the one field 'file'"


def test_a_malformed_multipart_body_is_400(tmp_path: Path) -> None:
    error = _refused(tmp_path, b"garbage" + _form(b"x"))
    assert error.code == ErrorCode.INVALID_REQUEST
    # The rest of the line is python-multipart's own description of the problem.
    assert error.message.startswith("malformed multipart body: Expected boundary character")


# -- the steps after receiving ------------------------------------------------------------------


def _received(tmp_path: Path, data: bytes) -> ReceivedUpload:
    path = tmp_path / f"upload-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return ReceivedUpload(path, hashlib.sha256(data).hexdigest(), len(data))


def _registry(harness: Any) -> Any:
    return harness.app.state.registry


def _invalid(call: Any) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        call()
    return caught.value


def test_parse_patch_wraps_the_format_error_in_one_line(acme: Any, tmp_path: Path) -> None:
    data = b"PK\x03\x04 not really a zip"
    with pytest.raises(patchfmt.PatchFormatError) as expected:
        patchfmt.read_patch(data)
    error = _invalid(lambda: upload.parse_patch(_received(tmp_path, data), _registry(acme)))
    assert (error.code, error.status) == (ErrorCode.INVALID_PATCH, 422)
    assert error.message == f"invalid .ppatch file: {expected.value}"
    assert str(tmp_path) not in error.message


def test_parse_patch_reads_with_the_registrys_limits(acme: Any, tmp_path: Path) -> None:
    registry = _registry(acme)
    data = build_patch(acme.signing_key)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest_size = archive.getinfo("manifest.json").file_size
        weights_size = archive.getinfo("weights.safetensors").file_size
    assert upload.parse_patch(_received(tmp_path, data), registry).manifest.name == "acme/toxicity"
    for setting, size, entry in (
        ("max_manifest_bytes", manifest_size, "manifest.json"),
        ("max_upload_bytes", weights_size, "weights.safetensors"),
    ):
        original = getattr(registry.settings, setting)
        object.__setattr__(registry.settings, setting, size - 1)
        try:
            error = _invalid(lambda: upload.parse_patch(_received(tmp_path, data), registry))
        finally:
            object.__setattr__(registry.settings, setting, original)
        assert error.code == ErrorCode.INVALID_PATCH
        assert error.message.startswith("invalid .ppatch file: ")
        assert entry in error.message and str(size - 1) in error.message


@pytest.mark.parametrize("section", ["training", "evaluation"])
def test_a_control_character_in_a_free_text_section_is_refused(
    acme: Any, tmp_path: Path, section: str
) -> None:
    fields: dict[str, Any] = {section: {"notes": "line\x1b[31m"}}
    data = build_patch(acme.signing_key, **fields)
    error = _invalid(lambda: upload.parse_patch(_received(tmp_path, data), _registry(acme)))
    assert error.code == ErrorCode.INVALID_PATCH
    assert error.message.startswith(f"invalid .ppatch file: manifest {section}.notes ")
    assert "'\\x1b'" in error.message or "U+001B" in error.message


def _patch(**kwargs: Any) -> patchfmt.PatchFile:
    key = kwargs.pop("key", None)
    return patchfmt.read_patch(build_patch(key, **kwargs))


def test_check_name_names_both_sides() -> None:
    patch = _patch(name="acme/bias")
    upload.check_name(patch, "acme", "bias")
    error = _invalid(lambda: upload.check_name(patch, "acme", "toxicity"))
    assert (error.code, error.status) == (ErrorCode.NAME_MISMATCH, 422)
    assert error.message == "the manifest names 'acme/bias' but this URL publishes 'acme/toxicity'"
    error = _invalid(lambda: upload.check_name(patch, "beta", "bias"))
    assert error.message == "the manifest names 'acme/bias' but this URL publishes 'beta/bias'"


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "1.2.0+build.1",
            "version '1.2.0+build.1' has build metadata ('+build.1'); a registry version names "
            "one artifact per model: publish 1.2.0 or a new version instead",
        ),
        (
            "3.4.5-rc.1+b7",
            "version '3.4.5-rc.1+b7' has build metadata ('+b7'); a registry version names "
            "one artifact per model: publish 3.4.5-rc.1 or a new version instead",
        ),
    ],
)
def test_build_metadata_is_refused_with_the_version_to_publish(version: str, message: str) -> None:
    error = _invalid(lambda: upload.check_version(_patch(version=version)))
    assert (error.code, error.message) == (ErrorCode.INVALID_PATCH, message)


@pytest.mark.parametrize("version", ["1.2.0", "1.2.0-rc.1"])
def test_versions_without_build_metadata_pass(version: str) -> None:
    upload.check_version(_patch(version=version))


# -- the signature ------------------------------------------------------------------------------


def _namespace(harness: Any, session: Any, name: str = "acme") -> Namespace:
    return session.scalar(select(Namespace).where(Namespace.name == name))


def _revoke(harness: Any, key_id: str) -> None:
    import datetime as dt

    with harness.session() as session:
        row = session.scalar(select(SigningKey).where(SigningKey.key_id == key_id))
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.commit()


def test_the_signer_of_a_patch_signed_by_an_active_key_is_returned(acme: Any, other_key) -> None:
    from registry_server import admin

    # A second key registered and then revoked must not disturb the active one.
    with acme.session() as session:
        admin.add_key(
            session, "acme", patchfmt.public_key_to_pem(other_key.public_key()), admin.CLI_ACTOR
        )
        session.commit()
    _revoke(acme, patchfmt.key_id(other_key))
    with acme.session() as session:
        signer = upload.check_signature(
            session, _namespace(acme, session), _patch(key=acme.signing_key)
        )
    assert signer == patchfmt.key_id(acme.signing_key)


def test_an_unsigned_patch_is_refused(acme: Any) -> None:
    with acme.session() as session:
        error = _invalid(
            lambda: upload.check_signature(session, _namespace(acme, session), _patch())
        )
    assert (error.code, error.status) == (ErrorCode.INVALID_SIGNATURE, 422)
    assert error.message == (
        "the file is unsigned; this registry accepts only patches signed by a key "
        "registered to namespace 'acme'"
    )


def test_a_patch_signed_by_a_revoked_key_is_refused(acme: Any) -> None:
    key_id = patchfmt.key_id(acme.signing_key)
    _revoke(acme, key_id)
    patch = _patch(key=acme.signing_key)
    with acme.session() as session:
        error = _invalid(lambda: upload.check_signature(session, _namespace(acme, session), patch))
    assert error.code == ErrorCode.INVALID_SIGNATURE
    assert error.message == f"the file is signed by key {key_id!r}, which namespace 'acme' revoked"


def test_a_key_registered_to_another_namespace_is_not_trusted(acme: Any, other_key) -> None:
    acme.namespace("beta", key=other_key)
    key_id = patchfmt.key_id(other_key)
    patch = _patch(key=other_key)
    with acme.session() as session:
        assert upload.check_signature(session, _namespace(acme, session, "beta"), patch) == key_id
        error = _invalid(lambda: upload.check_signature(session, _namespace(acme, session), patch))
    assert error.code == ErrorCode.INVALID_SIGNATURE
    assert error.message == (
        f"the file is signed by key {key_id!r}, which is not registered to namespace 'acme' "
        "(add it with `ppatch-registry key add`)"
    )


def _forged(data: bytes) -> bytes:
    """The manifest changed after signing, the signature (by the registered key) kept."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "manifest.json":
                content = content.replace(b"Lowers toxicity", b"Raises toxicity")
            out.writestr(info, content)
    return buffer.getvalue()


def test_a_signature_that_does_not_verify_is_refused(acme: Any) -> None:
    patch = patchfmt.read_patch(_forged(build_patch(acme.signing_key)))
    key_id = patchfmt.key_id(acme.signing_key)
    with acme.session() as session:
        error = _invalid(lambda: upload.check_signature(session, _namespace(acme, session), patch))
    assert error.code == ErrorCode.INVALID_SIGNATURE
    assert error.message == (
        f"bad signature: the signature by key {key_id!r} does not verify over manifest.json "
        "(the manifest or the signature was changed after signing)"
    )


# -- names, answers and the ledger --------------------------------------------------------------


def test_the_artifact_filename_carries_twelve_digits_of_the_fingerprint() -> None:
    fingerprint = "sha256:" + "0123456789abcdef" * 4
    assert (
        upload.artifact_filename("acme", "tox", "1.2.0-rc.1", fingerprint)
        == "acme-tox-1.2.0-rc.1-0123456789ab.ppatch"
    )


def _ledger_row(
    acme: Any, namespace: str, package: str, version: str, fingerprint: str, sha256: str
) -> None:
    with acme.session() as session:
        session.add(PublishedFile(namespace=namespace, package=package, version=version,
                                  fingerprint=fingerprint, sha256=sha256))  # fmt: skip
        session.commit()


def test_existing_outcome_matches_all_four_fields(acme: Any, tmp_path: Path) -> None:
    held = _received(tmp_path, b"held bytes")
    _ledger_row(acme, "acme", "tox", "1.0.0", FP_A, held.sha256)
    acme.namespace("beta")
    with acme.session() as session:
        for key in (
            ("beta", "tox", "1.0.0", FP_A),
            ("acme", "bias", "1.0.0", FP_A),
            ("acme", "tox", "1.0.1", FP_A),
            ("acme", "tox", "1.0.0", FP_B),
        ):
            assert upload.existing_outcome(session, *key, held) is None
        # The ledger has the bytes but no artifact holds them: deleted, never reused.
        error = _invalid(
            lambda: upload.existing_outcome(session, "acme", "tox", "1.0.0", FP_A, held)
        )
    assert (error.code, error.status) == (ErrorCode.VERSION_EXISTS, 409)
    assert error.message == (
        f"acme/tox 1.0.0 for {FP_A} was deleted; "
        "a deleted version is never reused: publish a new version"
    )


def test_other_bytes_for_a_published_version_are_409(acme: Any, tmp_path: Path) -> None:
    _ledger_row(acme, "acme", "tox", "1.0.0", FP_A, "e" * 64)
    other = _received(tmp_path, b"other bytes")
    with acme.session() as session:
        error = _invalid(
            lambda: upload.existing_outcome(session, "acme", "tox", "1.0.0", FP_A, other)
        )
    assert (error.code, error.status) == (ErrorCode.VERSION_EXISTS, 409)
    assert error.message == (
        f"acme/tox 1.0.0 for {FP_A} already exists with other bytes "
        f"(sha256 {'e' * 64}); versions are immutable: publish a new version"
    )


def test_a_published_version_is_answered_before_any_blob_is_written(
    acme: Any, tmp_path: Path
) -> None:
    """The same bytes again (a no-op) and other bytes (409) are decided from the ledger: the
    blob store is not written, not even for a moment."""
    data = build_patch(acme.signing_key, seed=1)
    _publish(acme, tmp_path, data)
    storage = _registry(acme).storage
    writes: list[str] = []
    put = storage.put
    storage.put = lambda digest, source: (writes.append(digest), put(digest, source))[1]
    assert _publish(acme, tmp_path, data).created is False
    error = _invalid(lambda: _publish(acme, tmp_path, build_patch(acme.signing_key, seed=2)))
    assert error.code == ErrorCode.VERSION_EXISTS
    assert writes == []


def _publish(acme: Any, tmp_path: Path, data: bytes, name: str = "toxicity") -> Any:
    return upload.publish(_registry(acme), "acme", name, _received(tmp_path, data), CLI_ACTOR)


def test_publish_records_the_release_artifact_ledger_and_audit_rows(
    acme: Any, tmp_path: Path
) -> None:
    data = build_patch(acme.signing_key, version="1.0.0", seed=1)
    digest = hashlib.sha256(data).hexdigest()
    expected = {
        "name": "acme/toxicity",
        "version": "1.0.0",
        "fingerprint": FP_A,
        "sha256": digest,
        "size": len(data),
        "url": f"/blobs/sha256/{digest}",
    }
    with acme.session() as session:  # the token the actor names
        from registry_server import admin

        admin.create_token(session, "acme", "publish", admin.CLI_ACTOR)
        session.commit()
    token_id = _any_token_id(acme)
    actor = Actor(f"token:{token_id}", token_id)
    result = upload.publish(_registry(acme), "acme", "toxicity", _received(tmp_path, data), actor)
    assert (result.created, result.body) == (True, expected)
    with acme.session() as session:
        package = session.scalar(select(Package))
        release = session.scalar(select(Release))
        artifact = session.scalar(select(Artifact))
        ledger = session.scalar(select(PublishedFile))
        audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "release.upload"))
        assert (package.name, package.domain, package.summary) == (
            "toxicity",
            "toxicity",
            "Lowers toxicity of tiny-model",
        )
        assert len(package.index_etag) == 32 and int(package.index_etag, 16) >= 0
        assert (release.version, release.prerelease, release.yanked) == ("1.0.0", False, False)
        assert (artifact.fingerprint, artifact.sha256, artifact.size) == (FP_A, digest, len(data))
        assert artifact.filename == "acme-toxicity-1.0.0-aaaaaaaaaaaa.ppatch"
        assert artifact.key_id == patchfmt.key_id(acme.signing_key)
        assert artifact.uploaded_by == token_id
        assert artifact.manifest == json.loads(
            zipfile.ZipFile(io.BytesIO(data)).read("manifest.json")
        )
        assert (ledger.namespace, ledger.package, ledger.version) == ("acme", "toxicity", "1.0.0")
        assert (ledger.fingerprint, ledger.sha256) == (FP_A, digest)
        assert (audit.actor, audit.token_id, audit.namespace) == (actor.name, token_id, "acme")
        assert audit.target == "acme/toxicity@1.0.0"
        assert audit.detail == {"fingerprint": FP_A, "sha256": digest, "size": len(data)}
    stored = Path(acme.settings.resolved_storage) / "sha256" / digest[:2] / digest
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    # The same bytes again: nothing new, the same answer.
    again = _publish(acme, tmp_path, data)
    assert (again.created, again.body) == (False, expected)


def _any_token_id(harness: Any) -> str:
    from registry_server.models import Token

    with harness.session() as session:
        return str(session.scalar(select(Token.id)))


def test_the_package_description_follows_its_newest_release(acme: Any, tmp_path: Path) -> None:
    def etag() -> str:
        with acme.session() as session:
            return str(session.scalar(select(Package.index_etag)))

    def described() -> tuple[str, str]:
        with acme.session() as session:
            package = session.scalar(select(Package))
            return package.domain, package.summary

    key = acme.signing_key
    _publish(
        acme, tmp_path, build_patch(key, version="1.10.0", summary="newest", domain="custom:d1")
    )
    first = etag()
    # 1.9.0 is older than 1.10.0 by SemVer, though newer as text.
    _publish(acme, tmp_path, build_patch(key, version="1.9.0", summary="older", domain="custom:d0"))
    assert described() == ("custom:d1", "newest")
    assert etag() != first  # every upload changes the index
    _publish(
        acme, tmp_path, build_patch(key, version="2.0.0-rc.1", summary="rc", domain="custom:d2")
    )
    assert described() == ("custom:d2", "rc")
    with acme.session() as session:
        flags = dict(session.execute(select(Release.version, Release.prerelease)).all())
    assert flags == {"1.10.0": False, "1.9.0": False, "2.0.0-rc.1": True}


def test_packages_and_releases_are_found_by_namespace_and_name(
    acme: Any, tmp_path: Path, other_key
) -> None:
    # The same package name in two namespaces, and the same version in two packages: each
    # upload lands in its own package and release.
    acme.namespace("beta", key=other_key)
    toxicity = build_patch(acme.signing_key, seed=1)
    bias = build_patch(acme.signing_key, name="acme/bias", seed=2)
    beta = build_patch(other_key, name="beta/toxicity", seed=3)
    _publish(acme, tmp_path, toxicity)
    _publish(acme, tmp_path, bias, "bias")
    upload.publish(_registry(acme), "beta", "toxicity", _received(tmp_path, beta), CLI_ACTOR)
    with acme.session() as session:
        rows = session.execute(
            select(Namespace.name, Package.name, Release.version, Artifact.sha256)
            .join(Package, Package.namespace_id == Namespace.id)
            .join(Release, Release.package_id == Package.id)
            .join(Artifact, Artifact.release_id == Release.id)
        ).all()
    assert sorted(tuple(row) for row in rows) == [
        ("acme", "bias", "1.0.0", hashlib.sha256(bias).hexdigest()),
        ("acme", "toxicity", "1.0.0", hashlib.sha256(toxicity).hexdigest()),
        ("beta", "toxicity", "1.0.0", hashlib.sha256(beta).hexdigest()),
    ]


def test_a_second_fingerprint_joins_the_existing_release(acme: Any, tmp_path: Path) -> None:
    key = acme.signing_key
    _publish(acme, tmp_path, build_patch(key, fingerprint=FP_A, seed=1))
    _publish(acme, tmp_path, build_patch(key, fingerprint=FP_B, seed=2))
    with acme.session() as session:
        assert session.scalars(select(Release.version)).all() == ["1.0.0"]
        assert sorted(session.scalars(select(Artifact.filename)).all()) == [
            "acme-toxicity-1.0.0-aaaaaaaaaaaa.ppatch",
            "acme-toxicity-1.0.0-bbbbbbbbbbbb.ppatch",
        ]


def test_publishing_to_a_missing_namespace_is_404(acme: Any, tmp_path: Path) -> None:
    data = build_patch(acme.signing_key, name="ghost/toxicity")
    error = _invalid(
        lambda: upload.publish(
            _registry(acme), "ghost", "toxicity", _received(tmp_path, data), CLI_ACTOR
        )
    )
    assert (error.code, error.status) == (ErrorCode.NOT_FOUND, 404)
    assert error.message == "namespace 'ghost' does not exist"


# -- races and cleanup --------------------------------------------------------------------------


def _integrity_error(*args: Any, **kwargs: Any) -> Any:
    raise IntegrityError("INSERT", {}, Exception("unique constraint"))


def test_a_release_that_keeps_conflicting_is_given_up_after_three_tries(
    acme: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def conflicting(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[2])
        _integrity_error()

    monkeypatch.setattr(upload, "record_release", conflicting)
    data = build_patch(acme.signing_key, version="1.3.0")
    error = _invalid(lambda: _publish(acme, tmp_path, data))
    assert (error.code, error.status) == (ErrorCode.CONFLICT, 409)
    assert error.message == "acme/toxicity 1.3.0 is being changed concurrently; retry"
    assert attempts == ["toxicity"] * 3
    assert acme.blob_count() == 0  # the blob stored for the failed release is removed


def test_losing_the_race_to_the_same_bytes_is_a_no_op(
    acme: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = build_patch(acme.signing_key)
    real = upload.record_release

    def winner_first(session: Any, *args: Any, **kwargs: Any) -> Any:
        # Another upload of these bytes commits first (in its own session); ours then conflicts.
        with acme.session() as other:
            real(other, other.scalar(select(Namespace)), *args[1:], **kwargs)
            other.commit()
        monkeypatch.setattr(upload, "record_release", real)
        _integrity_error()

    monkeypatch.setattr(upload, "record_release", winner_first)
    result = _publish(acme, tmp_path, data)
    assert result.created is False
    assert result.body["sha256"] == hashlib.sha256(data).hexdigest()
    assert acme.blob_count() == 1


def test_a_failed_commit_keeps_a_blob_that_existed_before(
    acme: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = build_patch(acme.signing_key)
    digest = hashlib.sha256(data).hexdigest()
    storage = _registry(acme).storage
    storage.put(digest, _received(tmp_path, data).path)  # already there, e.g. another release's
    monkeypatch.setattr(upload, "record_release", _integrity_error)
    _invalid(lambda: _publish(acme, tmp_path, data))
    assert storage.exists(digest)


def test_a_failed_commit_removes_its_blob_even_with_the_database_down(
    acme: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = build_patch(acme.signing_key)
    digest = hashlib.sha256(data).hexdigest()
    registry = _registry(acme)

    def database_down(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(
            upload, "_blob_is_referenced", lambda *a: (_ for _ in ()).throw(OSError("down"))
        )
        raise OSError("connection lost")

    monkeypatch.setattr(upload, "record_release", database_down)
    with pytest.raises(OSError, match="connection lost"):
        _publish(acme, tmp_path, data)
    assert not registry.storage.exists(digest)


def test_a_blob_an_artifact_refers_to_is_not_discarded(acme: Any, tmp_path: Path) -> None:
    data = build_patch(acme.signing_key)
    digest = _publish(acme, tmp_path, data).body["sha256"]
    registry = _registry(acme)
    upload._discard_blob(registry, digest, existed_before=False)
    assert registry.storage.exists(digest)
    with acme.session() as session:
        session.query(Artifact).delete()
        session.commit()
    upload._discard_blob(registry, digest, existed_before=True)
    assert registry.storage.exists(digest)
    upload._discard_blob(registry, digest, existed_before=False)
    assert not registry.storage.exists(digest)
