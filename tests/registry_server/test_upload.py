"""Publishing: the upload pipeline through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from registry_server.models import Artifact, AuditEvent, PublishedFile, Release

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64


def _rows(acme: Any, model: Any) -> int:
    with acme.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def test_publish_creates_release_and_blob(acme, make_patch) -> None:
    data = make_patch()
    response = acme.upload(data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "acme/toxicity"
    assert body["version"] == "1.0.0"
    assert body["fingerprint"] == FP_A
    assert body["size"] == len(data)
    assert body["url"] == f"/blobs/sha256/{body['sha256']}"
    blob = acme.client.get(body["url"])
    assert blob.status_code == 200
    assert blob.content == data
    assert acme.blob_count() == 1


def test_same_bytes_again_is_a_no_op(acme, make_patch) -> None:
    data = make_patch()
    assert acme.upload(data).status_code == 201
    etag = acme.client.get("/api/v1/packages/acme/toxicity").headers["etag"]
    again = acme.upload(data)
    assert again.status_code == 200
    assert again.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert _rows(acme, Artifact) == 1
    assert acme.client.get("/api/v1/packages/acme/toxicity").headers["etag"] == etag


def test_same_version_with_other_bytes_is_409(acme, make_patch) -> None:
    assert acme.upload(make_patch(seed=1)).status_code == 201
    response = acme.upload(make_patch(seed=2))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_exists"
    assert "immutable" in response.json()["error"]["message"]
    assert acme.blob_count() == 1
    assert _rows(acme, Artifact) == 1


def test_a_deleted_version_is_never_reused(acme, make_patch) -> None:
    assert acme.upload(make_patch(seed=1)).status_code == 201
    with acme.session() as session:  # an operator removes the artifact by hand
        session.execute(delete(Artifact))
        session.commit()
    for data in (make_patch(seed=2), make_patch(seed=1)):
        response = acme.upload(data)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "version_exists"
    assert _rows(acme, PublishedFile) == 1


def test_one_release_holds_one_artifact_per_fingerprint(acme, make_patch) -> None:
    assert acme.upload(make_patch(fingerprint=FP_A)).status_code == 201
    assert acme.upload(make_patch(fingerprint=FP_B, seed=5)).status_code == 201
    index = acme.client.get("/api/v1/packages/acme/toxicity").json()
    assert [r["version"] for r in index["releases"]] == ["1.0.0"]
    assert [a["fingerprint"] for a in index["releases"][0]["artifacts"]] == [FP_A, FP_B]
    assert _rows(acme, Release) == 1


def test_upload_writes_an_audit_row(acme, make_patch) -> None:
    acme.upload(make_patch())
    with acme.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "release.upload")
        ).one()
    token_id = acme.token("acme").split("_")[1]
    assert event.token_id == token_id
    assert event.actor == f"token:{token_id}"
    assert event.target == "acme/toxicity@1.0.0"
    assert event.created_at is not None


# -- bad input: nothing stored, a clear error ------------------------------------------------


def _assert_nothing_stored(acme: Any) -> None:
    assert acme.blob_count() == 0
    assert _rows(acme, Artifact) == 0
    assert _rows(acme, Release) == 0
    assert not list((acme.settings.home / "tmp").glob("*"))


def _rezip(data: bytes, change: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as out:
        for name in source.namelist():
            out.writestr(name, change.get(name, source.read(name)))
    return buffer.getvalue()


def _tampered(data: bytes) -> bytes:
    # Other weights in a well-formed ZIP: only the manifest's sha256 can catch it.
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        weights = bytearray(source.read("weights.safetensors"))
    weights[-1] ^= 0x01
    return _rezip(data, {"weights.safetensors": bytes(weights)})


def _crc_broken(data: bytes) -> bytes:
    offset = data.index(b"prompt_embeddings") + 200
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def _manifest_only(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as out:
        out.writestr("manifest.json", source.read("manifest.json"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda data: b"not a zip file at all", "invalid .ppatch"),
        (lambda data: data[: len(data) // 2], "invalid .ppatch"),
        (lambda data: b"", "invalid .ppatch"),
        (_tampered, "invalid .ppatch"),
        (_crc_broken, "invalid .ppatch"),
        (_manifest_only, "invalid .ppatch"),
    ],
    ids=["garbage", "truncated", "empty", "tampered-weights", "crc-broken", "missing-weights"],
)
def test_malformed_or_tampered_patch_is_422(acme, make_patch, mutate, fragment) -> None:
    response = acme.upload(mutate(make_patch()))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_patch"
    assert fragment in error["message"]
    _assert_nothing_stored(acme)


def test_tampered_weights_message_names_the_hash(acme, make_patch) -> None:
    message = acme.upload(_tampered(make_patch())).json()["error"]["message"]
    assert "weights.safetensors" in message
    assert "sha256" in message or "hash" in message.lower()
    assert str(acme.settings.home) not in message


def test_unsigned_patch_is_422(acme, make_patch) -> None:
    response = acme.upload(make_patch(key=None))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "unsigned" in response.json()["error"]["message"]
    _assert_nothing_stored(acme)


def test_signature_by_unregistered_key_is_422(acme, make_patch, other_key) -> None:
    response = acme.upload(make_patch(key=other_key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert "not registered" in error["message"]
    _assert_nothing_stored(acme)


def _forged(data: bytes) -> bytes:
    """The manifest changed after signing, the signature kept: it names the registered key but
    does not verify (docs/registry.md: `422 invalid_signature`, "a bad signature")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():  # the same entry headers: the canonical layout holds
            content = source.read(info.filename)
            if info.filename == "manifest.json":
                assert b"Lowers toxicity" in content
                content = content.replace(b"Lowers toxicity", b"Raises toxicity")
            out.writestr(info, content)
    return buffer.getvalue()


def test_bad_signature_by_the_registered_key_is_422(acme, make_patch, signing_key) -> None:
    import patchfmt

    data = _forged(make_patch())
    # The forgery is a well-formed patch naming the namespace's own key: only the signature
    # check can refuse it.
    assert patchfmt.read_patch(data).signature.key_id == patchfmt.key_id(signing_key)
    response = acme.upload(data)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert "signature" in error["message"]
    assert "not registered" not in error["message"] and "revoked" not in error["message"]
    _assert_nothing_stored(acme)


def test_signature_by_revoked_key_is_422(acme, make_patch, signing_key) -> None:
    import patchfmt

    key_id = patchfmt.key_id(signing_key.public_key())
    revoked = acme.client.post(
        f"/api/v1/namespaces/acme/keys/{key_id}/revoke", headers=acme.auth(scope="admin")
    )
    assert revoked.status_code == 200
    response = acme.upload(make_patch())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "revoked" in response.json()["error"]["message"]
    _assert_nothing_stored(acme)


def test_key_of_another_namespace_is_not_trusted(acme, make_patch, other_key) -> None:
    acme.namespace("evil", key=other_key)
    response = acme.upload(make_patch(key=other_key))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_signature"


def test_manifest_name_must_match_url(acme, make_patch) -> None:
    response = acme.upload(make_patch(name="acme/bias"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "name_mismatch"
    assert "'acme/bias'" in error["message"] and "'acme/toxicity'" in error["message"]
    _assert_nothing_stored(acme)


def test_build_metadata_is_refused_so_one_version_is_one_artifact(acme, make_patch) -> None:
    response = acme.upload(make_patch(version="1.2.0+build.1"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_patch"
    assert "'1.2.0+build.1'" in error["message"] and "publish 1.2.0" in error["message"]
    _assert_nothing_stored(acme)


def test_oversize_upload_is_413_and_stores_nothing(acme, make_patch) -> None:
    big = make_patch(tokens=2048, hidden=64)  # 512 KiB > the 256 KiB limit in tests
    response = acme.upload(big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    _assert_nothing_stored(acme)


def test_oversize_upload_without_content_length_is_413(acme, make_patch) -> None:
    # A chunked body has no Content-Length: the limit is enforced while streaming.
    big = make_patch(tokens=2048, hidden=64)
    boundary = "x" * 16
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p"\r\n\r\n'
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks():
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = acme.client.post(
        "/api/v1/packages/acme/toxicity/releases",
        content=chunks(),
        headers={**acme.auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    _assert_nothing_stored(acme)


def test_declared_oversize_is_refused_before_reading(acme) -> None:
    response = acme.client.post(
        "/api/v1/packages/acme/toxicity/releases",
        content=b"tiny",
        headers={
            **acme.auth(),
            "Content-Type": "multipart/form-data; boundary=abc",
            "Content-Length": str(10**9),
        },
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [
        ("application/octet-stream", b"raw", "multipart/form-data"),
        ("multipart/form-data; boundary=abc", b"--abc--\r\n", "no field 'file'"),
        (
            "multipart/form-data; boundary=abc",
            b'--abc\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--abc--\r\n',
            "unexpected form field 'other'",
        ),
    ],
    ids=["not-multipart", "no-file", "other-field"],
)
def test_malformed_form_is_400(acme, content_type, body, fragment) -> None:
    response = acme.client.post(
        "/api/v1/packages/acme/toxicity/releases",
        content=body,
        headers={**acme.auth(), "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert fragment in response.json()["error"]["message"]
    _assert_nothing_stored(acme)


def test_upload_to_unknown_namespace_is_rejected(acme, make_patch) -> None:
    response = acme.upload(make_patch(name="nobody/toxicity"), path="nobody/toxicity")
    assert response.status_code == 403  # the token is acme's
    assert response.json()["error"]["code"] == "forbidden"


def test_a_blob_removed_before_its_row_committed_is_stored_again(acme, make_patch) -> None:
    """`fsck --repair` in another process may remove the blob while it is still an orphan
    (stored, row not yet committed): the publish stores it again from the upload file."""
    storage = acme.app.state.registry.storage
    put = storage.put
    removed: list[str] = []

    def put_then_lose(digest: str, source) -> None:
        put(digest, source)
        if not removed:  # the repair strikes once, right after the first store
            storage.delete(digest)
            removed.append(digest)

    storage.put = put_then_lose
    data = make_patch()
    response = acme.upload(data)
    assert response.status_code == 201, response.text
    assert removed == [hashlib.sha256(data).hexdigest()]
    assert storage.exists(removed[0])
    download = acme.client.get(response.json()["url"])
    assert download.status_code == 200 and download.content == data
