"""The container: deterministic bytes, and a reader that checks everything before trusting it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as safetensors_save

from patchfmt import (
    HashMismatchError,
    InvalidContainerError,
    InvalidManifestError,
    InvalidWeightsError,
    Manifest,
    PatchFormatError,
    ReadLimits,
    SignatureError,
    UnsupportedFormatError,
    pack_patch,
    read_patch,
    write_patch,
)
from patchfmt.container import _zip as stored_zip

# sha256 of the packed bytes of the fixed manifest, weights and key in conftest.py. If this
# changes, every published file changes: bump the format, do not update the constant.
GOLDEN_SHA256 = "37837898b8ec956fd9192dfde98024850a8384bcc95488b2b13499935871dbf5"


@pytest.fixture
def signed_bytes(fixed_signed_file: bytes) -> bytes:
    return fixed_signed_file


def entries_of(manifest: Manifest, weights: bytes) -> dict[str, bytes]:
    return {"manifest.json": manifest.canonical_bytes(), "weights.safetensors": weights}


def rezip(entries: dict[str, bytes]) -> bytes:
    return stored_zip(list(entries.items()))


def python_zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in entries:
                info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                archive.writestr(info, data)
    return buffer.getvalue()


def with_manifest(manifest: Manifest, weights: bytes, **update: Any) -> bytes:
    return rezip(entries_of(manifest.model_copy(update=update), weights))


# -- writing ---------------------------------------------------------------------------------


def test_golden_bytes(signed_bytes: bytes) -> None:
    assert hashlib.sha256(signed_bytes).hexdigest() == GOLDEN_SHA256


def test_packing_is_deterministic(signed_bytes: bytes) -> None:
    # Packed again in a fresh interpreter (its own hash seed, import order and allocator state),
    # the same inputs give these very bytes: the golden digest pins them within this process.
    code = (
        "import hashlib, sys\n"
        "from patchfmt import build_manifest, pack_patch, sign_manifest\n"
        "from tests.patchfmt.conftest import fixed_key, fixed_weights, human_fields\n"
        "weights = fixed_weights()\n"
        "manifest = build_manifest(human_fields(), weights)\n"
        "signature = sign_manifest(manifest.canonical_bytes(), fixed_key())\n"
        "sys.stdout.write(hashlib.sha256(pack_patch(manifest, weights, signature)).hexdigest())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert result.stdout == hashlib.sha256(signed_bytes).hexdigest() == GOLDEN_SHA256


def test_layout_is_a_plain_stored_zip(signed_bytes: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(signed_bytes)) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    assert [info.filename for info in infos] == [
        "manifest.json",
        "signature.json",
        "weights.safetensors",
    ]
    for info in infos:
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr == 0o100644 << 16
        assert info.extra == b""
        assert info.comment == b""


def test_round_trip(
    signed_bytes: bytes, manifest: Manifest, weights: bytes, tmp_path: Path
) -> None:
    patch = read_patch(signed_bytes)
    assert patch.manifest == manifest
    assert patch.manifest_bytes == manifest.canonical_bytes()
    assert patch.weights == weights
    assert patch.signature is not None
    expected = (np.arange(32, dtype=np.float32).reshape(4, 8) - 7) / 16
    np.testing.assert_array_equal(patch.embeddings(), expected)
    path = tmp_path / "p.ppatch"
    path.write_bytes(signed_bytes)
    assert read_patch(path) == patch
    assert read_patch(str(path)) == patch


def test_unsigned_patch_has_no_signature_entry(manifest: Manifest, weights: bytes) -> None:
    patch = read_patch(pack_patch(manifest, weights))
    assert patch.signature is None


def test_write_patch_signs_and_writes_atomically(
    manifest: Manifest, weights: bytes, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    target = tmp_path / "out.ppatch"
    write_patch(target, manifest, weights, private_key)
    assert read_patch(target).signature is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ppatch"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing_and_keeps_the_old_file(
    manifest: Manifest, make_weights: Callable[..., bytes], tmp_path: Path
) -> None:
    target = tmp_path / "out.ppatch"
    target.write_bytes(b"old")
    other_weights = make_weights(tokens=2)
    with pytest.raises(PatchFormatError):
        write_patch(target, manifest, other_weights)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ppatch"]


def test_pack_refuses_weights_that_do_not_match_the_manifest(
    manifest: Manifest, weights: bytes
) -> None:
    tampered = weights[:-1] + bytes([weights[-1] ^ 1])
    with pytest.raises(HashMismatchError) as caught:
        pack_patch(manifest, tampered)
    assert caught.value.file == "weights.safetensors"
    assert caught.value.actual == hashlib.sha256(tampered).hexdigest()


# -- reading: crafted files ------------------------------------------------------------------

Crafter = Callable[[Manifest, bytes], bytes]


def _comment(manifest: Manifest, weights: bytes) -> bytes:
    return pack_patch(manifest, weights)[:-2] + struct.pack("<H", 3) + b"hey"


def _local_size_lies(manifest: Manifest, weights: bytes) -> bytes:
    data = bytearray(pack_patch(manifest, weights))
    data[22:26] = struct.pack("<I", 1)  # manifest.json's local "uncompressed size"
    return bytes(data)


def _data_byte_changed(manifest: Manifest, weights: bytes) -> bytes:
    data = bytearray(pack_patch(manifest, weights))
    data[30 + len("manifest.json") + 5] ^= 0x20  # inside manifest.json's data
    return bytes(data)


def _python_zipfile(manifest: Manifest, weights: bytes) -> bytes:
    return python_zip(sorted(entries_of(manifest, weights).items()))


def _zip_bomb(manifest: Manifest, weights: bytes) -> bytes:
    # 16 MiB of zeros deflate to about 16 KiB: refused for being compressed, never inflated.
    entries = [("manifest.json", manifest.canonical_bytes()), ("weights.safetensors", bytes(2**24))]
    return python_zip(entries, compression=zipfile.ZIP_DEFLATED)


def _named(*names: str) -> Crafter:
    def craft(manifest: Manifest, weights: bytes) -> bytes:
        contents = entries_of(manifest, weights)
        entries = [(name, contents.get(name, b"x")) for name in names]
        return stored_zip(entries)

    return craft


def _pretty_manifest(manifest: Manifest, weights: bytes) -> bytes:
    pretty = json.dumps(json.loads(manifest.canonical_bytes()), indent=2).encode()
    return rezip({"manifest.json": pretty, "weights.safetensors": weights})


def _wrong_size(manifest: Manifest, weights: bytes) -> bytes:
    digest = manifest.files["weights.safetensors"].model_copy(update={"size": 5})
    return with_manifest(manifest, weights, files={"weights.safetensors": digest})


def _wrong_shape(manifest: Manifest, weights: bytes) -> bytes:
    declared = manifest.patch.model_copy(update={"num_virtual_tokens": 2, "hidden_size": 16})
    return with_manifest(manifest, weights, patch=declared)


def _wrong_dtype(manifest: Manifest, weights: bytes) -> bytes:
    return with_manifest(
        manifest, weights, patch=manifest.patch.model_copy(update={"dtype": "bfloat16"})
    )


def _wrong_tensor_name(manifest: Manifest, weights: bytes) -> bytes:
    renamed = safetensors_save({"embeddings": np.zeros((4, 8), dtype=np.float32)})
    digest = manifest.files["weights.safetensors"].model_copy(
        update={"sha256": hashlib.sha256(renamed).hexdigest(), "size": len(renamed)}
    )
    return with_manifest(manifest, renamed, files={"weights.safetensors": digest})


def _non_finite(manifest: Manifest, weights: bytes) -> bytes:
    broken = weights[:-4] + np.array([np.inf], dtype="<f4").tobytes()
    digest = manifest.files["weights.safetensors"].model_copy(
        update={"sha256": hashlib.sha256(broken).hexdigest()}
    )
    return with_manifest(manifest, broken, files={"weights.safetensors": digest})


def _future_format(manifest: Manifest, weights: bytes) -> bytes:
    future = json.loads(manifest.canonical_bytes()) | {"format": "ppatch/2", "adapters": []}
    entries = entries_of(manifest, weights)
    entries["manifest.json"] = json.dumps(future).encode()
    entries["adapters.bin"] = b"\x00"
    return rezip(entries)


def _bad_signature_json(manifest: Manifest, weights: bytes) -> bytes:
    entries = entries_of(manifest, weights)
    entries["signature.json"] = b'{"algorithm":"rsa","key_id":"x","signature":"00"}'
    return rezip(entries)


CRAFTED: list[tuple[str, Crafter, type[Exception], str]] = [
    ("empty", lambda m, w: b"", InvalidContainerError, "no ZIP end record"),
    ("text", lambda m, w: b"hello, I am not a zip" * 3, InvalidContainerError, "no ZIP end"),
    ("comment", _comment, InvalidContainerError, "without a comment"),
    ("zip-bomb", _zip_bomb, InvalidContainerError, "is compressed (method 8)"),
    (
        "duplicate",
        _named("manifest.json", "manifest.json"),
        InvalidContainerError,
        "more than once",
    ),
    (
        "absolute",
        _named("/manifest.json", "weights.safetensors"),
        InvalidContainerError,
        "absolute",
    ),
    ("drive", _named("c:manifest.json", "weights.safetensors"), InvalidContainerError, "absolute"),
    ("dotdot", _named("manifest.json", "../weights.safetensors"), InvalidContainerError, "escapes"),
    ("backslash", _named("manifest.json", "a\\b"), InvalidContainerError, "escapes"),
    (
        "non-ascii",
        lambda m, w: python_zip([("manifest.json", b"{}"), ("wéights", b"")]),
        InvalidContainerError,
        "not ASCII",
    ),
    (
        "extra",
        _named("evil.sh", "manifest.json", "weights.safetensors"),
        InvalidContainerError,
        "unexpected ['evil.sh']",
    ),
    ("missing", _named("manifest.json"), InvalidContainerError, "missing ['weights.safetensors']"),
    (
        "four",
        _named("a", "manifest.json", "signature.json", "weights.safetensors"),
        InvalidContainerError,
        "holds 4 entries",
    ),
    ("local-lies", _local_size_lies, InvalidContainerError, "disagrees with the central"),
    ("crc", _data_byte_changed, InvalidContainerError, "CRC-32"),
    ("other-zip-writer", _python_zipfile, InvalidContainerError, "canonical ppatch/1 layout"),
    ("pretty-json", _pretty_manifest, InvalidManifestError, "not canonical JSON"),
    ("size", _wrong_size, InvalidContainerError, "the manifest declares 5"),
    (
        "shape",
        _wrong_shape,
        InvalidWeightsError,
        "is float32 [4, 8] but the manifest's patch declares float32 [2, 16]",
    ),
    ("dtype", _wrong_dtype, InvalidWeightsError, "float32 [4, 8] but the manifest's patch"),
    ("tensor-name", _wrong_tensor_name, InvalidWeightsError, "one tensor 'prompt_embeddings'"),
    ("non-finite", _non_finite, InvalidWeightsError, "NaN or infinite"),
    ("future", _future_format, UnsupportedFormatError, "'ppatch/2' is not supported"),
    ("signature", _bad_signature_json, SignatureError, "signature.json: malformed"),
]


@pytest.mark.parametrize(
    ("craft", "error", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in CRAFTED],
)
def test_crafted_files_are_refused(
    manifest: Manifest, weights: bytes, craft: Crafter, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        read_patch(craft(manifest, weights))
    assert fragment in str(caught.value)


def test_hash_mismatch_names_the_file(manifest: Manifest, weights: bytes) -> None:
    digest = manifest.files["weights.safetensors"].model_copy(update={"sha256": "0" * 64})
    with pytest.raises(HashMismatchError) as caught:
        read_patch(with_manifest(manifest, weights, files={"weights.safetensors": digest}))
    assert (caught.value.file, caught.value.expected) == ("weights.safetensors", "0" * 64)
    assert caught.value.actual == hashlib.sha256(weights).hexdigest()


def test_declared_sizes_are_capped_before_reading(manifest: Manifest, weights: bytes) -> None:
    data = pack_patch(manifest, weights)
    limits = ReadLimits(max_weights_bytes=len(weights) - 1)
    with pytest.raises(InvalidContainerError, match=r"'weights.safetensors' declares \d+ bytes"):
        read_patch(data, limits)


def test_a_central_directory_claiming_huge_entries_is_refused(
    manifest: Manifest, weights: bytes
) -> None:
    data = bytearray(pack_patch(manifest, weights))
    central = data.index(b"PK\x01\x02")
    data[central + 20 : central + 28] = struct.pack("<II", 2**32 - 1, 2**32 - 1)
    with pytest.raises(InvalidContainerError, match=r"'manifest.json' declares 4294967295 bytes"):
        read_patch(bytes(data))


def test_files_over_the_total_limit_are_refused_unread(
    manifest: Manifest, weights: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "big.ppatch"
    path.write_bytes(pack_patch(manifest, weights))
    limits = ReadLimits(max_manifest_bytes=10, max_weights_bytes=10, max_signature_bytes=10)
    with pytest.raises(InvalidContainerError, match=r"file is \d+ bytes; the limit is 1054"):
        read_patch(path, limits)


def test_the_safetensors_header_is_bounded(manifest: Manifest, weights: bytes) -> None:
    with pytest.raises(InvalidWeightsError, match="the limit is 16"):
        read_patch(pack_patch(manifest, weights), ReadLimits(max_header_bytes=16))


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_patch(tmp_path / "absent.ppatch")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_byte_flip_is_refused_with_a_typed_error(
    fixed_signed_file: bytes, data: st.DataObject
) -> None:
    signed = fixed_signed_file
    position = data.draw(st.integers(0, len(signed) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    flipped = bytearray(signed)
    flipped[position] ^= mask
    with pytest.raises(PatchFormatError):
        read_patch(bytes(flipped))


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_truncation_is_refused_with_a_typed_error(
    fixed_signed_file: bytes, data: st.DataObject
) -> None:
    signed = fixed_signed_file
    length = data.draw(st.integers(0, len(signed) - 1), label="length")
    with pytest.raises(PatchFormatError):
        read_patch(signed[:length])


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_single_byte_change_is_refused(fixed_signed_file: bytes, mask: int) -> None:
    accepted = []
    for position in range(len(fixed_signed_file)):
        changed = bytearray(fixed_signed_file)
        changed[position] ^= mask
        try:
            read_patch(bytes(changed))
        except PatchFormatError:
            continue
        accepted.append(position)
    assert accepted == []


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_fail_only_with_typed_errors(data: bytes) -> None:
    with pytest.raises(PatchFormatError):
        read_patch(data)
