"""The `.ppatch` container: a deterministic, uncompressed ZIP with a fixed set of entries.

Writing builds the ZIP by hand so that every byte is specified (docs/format.md); reading parses
it strictly, checking each declared size against a limit before touching the data, and finally
requires the file to be byte-for-byte the canonical packing of what it holds, so a file has one
and only one accepted form.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from patchfmt.atomic import atomic_write_bytes
from patchfmt.canonical import loads_strict
from patchfmt.errors import (
    HashMismatchError,
    InvalidContainerError,
    InvalidManifestError,
    InvalidWeightsError,
)
from patchfmt.manifest import (
    MAX_MANIFEST_BYTES,
    WEIGHTS_ENTRY,
    Manifest,
    check_format_version,
)
from patchfmt.signing import (
    MAX_SIGNATURE_BYTES,
    Ed25519PrivateKey,
    Signature,
    sign_manifest,
)
from patchfmt.weights import DEFAULT_MAX_HEADER_BYTES, array_from_weights, inspect_weights

__all__ = [
    "MANIFEST_ENTRY",
    "SIGNATURE_ENTRY",
    "WEIGHTS_ENTRY",
    "PatchFile",
    "ReadLimits",
    "pack_patch",
    "read_patch",
    "write_patch",
]

MANIFEST_ENTRY = "manifest.json"
SIGNATURE_ENTRY = "signature.json"
_REQUIRED = (MANIFEST_ENTRY, WEIGHTS_ENTRY)
_ALLOWED = (MANIFEST_ENTRY, SIGNATURE_ENTRY, WEIGHTS_ENTRY)

# Fixed ZIP header values (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16).
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_LOCAL_SIGNATURE = 0x04034B50
_CENTRAL_SIGNATURE = 0x02014B50
_END_SIGNATURE = 0x06054B50
_VERSION_NEEDED = 20  # 2.0
_VERSION_MADE_BY = (3 << 8) | 20  # Unix, 2.0
_DOS_TIME = 0  # 00:00:00
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest ZIP date
_EXTERNAL_ATTRIBUTES = 0o100644 << 16  # regular file, rw-r--r--
_STORED = 0


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds checked before anything is read or allocated."""

    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    max_weights_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_signature_bytes: int = MAX_SIGNATURE_BYTES

    def entry_limit(self, name: str) -> int:
        return {
            MANIFEST_ENTRY: self.max_manifest_bytes,
            WEIGHTS_ENTRY: self.max_weights_bytes,
            SIGNATURE_ENTRY: self.max_signature_bytes,
        }[name]

    @property
    def max_file_bytes(self) -> int:
        # Headers: three entries of at most 30 + 46 + 19 bytes each, and the 22-byte end record.
        return self.max_manifest_bytes + self.max_weights_bytes + self.max_signature_bytes + 1024


@dataclass(frozen=True)
class PatchFile:
    """A `.ppatch` that passed every structural, size, hash and tensor check (not the signature)."""

    manifest: Manifest
    manifest_bytes: bytes
    weights: bytes
    signature: Signature | None

    def embeddings(self) -> npt.NDArray[np.float32]:
        return array_from_weights(self.weights)


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    local_parts: list[bytes] = []
    central_parts: list[bytes] = []
    offset = 0
    for name, data in sorted(entries):
        encoded = name.encode("ascii")
        crc = zlib.crc32(data)
        local = _LOCAL.pack(
            _LOCAL_SIGNATURE, _VERSION_NEEDED, 0, _STORED, _DOS_TIME, _DOS_DATE,
            crc, len(data), len(data), len(encoded), 0,
        )  # fmt: skip
        central = _CENTRAL.pack(
            _CENTRAL_SIGNATURE, _VERSION_MADE_BY, _VERSION_NEEDED, 0, _STORED, _DOS_TIME,
            _DOS_DATE, crc, len(data), len(data), len(encoded), 0, 0, 0, 0,
            _EXTERNAL_ATTRIBUTES, offset,
        )  # fmt: skip
        central_parts.append(central + encoded)
        local_parts += [local, encoded, data]
        offset += len(local) + len(encoded) + len(data)
    directory = b"".join(central_parts)
    end = _END.pack(_END_SIGNATURE, 0, 0, len(entries), len(entries), len(directory), offset, 0)
    return b"".join(local_parts) + directory + end


def _check_files(manifest: Manifest, weights: bytes, source: str) -> None:
    declared = manifest.files[WEIGHTS_ENTRY]
    if declared.size != len(weights):
        raise InvalidContainerError(
            f"{source}: {WEIGHTS_ENTRY!r} is {len(weights)} bytes but the manifest declares "
            f"{declared.size}"
        )
    actual = hashlib.sha256(weights).hexdigest()
    if not hmac.compare_digest(actual, declared.sha256):
        raise HashMismatchError(WEIGHTS_ENTRY, declared.sha256, actual)


def pack_patch(manifest: Manifest, weights: bytes, signature: Signature | None = None) -> bytes:
    """The deterministic ZIP bytes of a patch; the weights must match the manifest's digest."""
    _check_files(manifest, weights, "pack")
    entries = [(MANIFEST_ENTRY, manifest.canonical_bytes()), (WEIGHTS_ENTRY, weights)]
    if signature is not None:
        entries.append((SIGNATURE_ENTRY, signature.canonical_bytes()))
    return _zip(entries)


def write_patch(
    path: Path | str,
    manifest: Manifest,
    weights: bytes,
    private_key: Ed25519PrivateKey | None = None,
) -> None:
    """Sign when a key is given, check the result reads back, write atomically."""
    signature = (
        sign_manifest(manifest.canonical_bytes(), private_key) if private_key is not None else None
    )
    data = pack_patch(manifest, weights, signature)
    read_patch(data)  # never write a file this library would refuse to read
    atomic_write_bytes(path, data)


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    crc: int
    size: int
    offset: int


def _load(source: Path | str | bytes, limits: ReadLimits) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = "patch"
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"patch file {label!r} does not exist or is not a file")
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise InvalidContainerError(
                f"{label}: file is {size} bytes; the limit is {limits.max_file_bytes}"
            )
        with path.open("rb") as stream:
            data = stream.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise InvalidContainerError(
            f"{label}: file is {len(data)} bytes; the limit is {limits.max_file_bytes}"
        )
    return data, label


def _check_name(raw: bytes, seen: set[str], label: str) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidContainerError(
            f"{label}: entry name {raw!r} is not ASCII; expected one of {list(_ALLOWED)!r}"
        ) from None
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidContainerError(f"{label}: entry {name!r} is an absolute path")
    if ".." in name.replace("\\", "/").split("/") or "\\" in name:
        raise InvalidContainerError(
            f"{label}: entry {name!r} escapes the archive ('..' or '\\' in its path)"
        )
    if name in seen:
        raise InvalidContainerError(f"{label}: entry {name!r} appears more than once")
    return name


def _central_directory(data: bytes, limits: ReadLimits, label: str) -> tuple[list[_Entry], int]:
    if len(data) < _END.size or data[-_END.size :][:4] != struct.pack("<I", _END_SIGNATURE):
        raise InvalidContainerError(
            f"{label}: not a ppatch/1 container (no ZIP end record at the end of the file; "
            "ppatch files are ZIPs without a comment)"
        )
    end_offset = len(data) - _END.size
    _, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment = _END.unpack(data[end_offset:])
    if disk or cd_disk or on_disk != total or comment:
        raise InvalidContainerError(f"{label}: multi-disk ZIPs and ZIP comments are refused")
    if not 1 <= total <= len(_ALLOWED):
        raise InvalidContainerError(
            f"{label}: holds {total} entries; a ppatch/1 file holds 2 or 3 ({', '.join(_ALLOWED)})"
        )
    if cd_offset + cd_size != end_offset:
        raise InvalidContainerError(
            f"{label}: central directory at {cd_offset} of {cd_size} bytes does not end where "
            f"the end record starts ({end_offset})"
        )
    entries: list[_Entry] = []
    seen: set[str] = set()
    position = cd_offset
    for _ in range(total):
        if position + _CENTRAL.size > end_offset:
            raise InvalidContainerError(f"{label}: central directory is truncated")
        fields = _CENTRAL.unpack(data[position : position + _CENTRAL.size])
        (signature, _made_by, _needed, flags, method, _time, _date, crc, compressed, size,
         name_length, extra_length, comment_length, _disk, _internal, _external,
         offset) = fields  # fmt: skip
        if signature != _CENTRAL_SIGNATURE:
            raise InvalidContainerError(f"{label}: bad central directory record at {position}")
        name_start = position + _CENTRAL.size
        if name_start + name_length + extra_length + comment_length > end_offset:
            raise InvalidContainerError(f"{label}: central directory is truncated")
        name = _check_name(data[name_start : name_start + name_length], seen, label)
        seen.add(name)
        if flags & 1:
            raise InvalidContainerError(f"{label}: entry {name!r} is encrypted")
        if method != _STORED:
            raise InvalidContainerError(
                f"{label}: entry {name!r} is compressed (method {method}); ppatch/1 stores "
                "entries uncompressed (method 0)"
            )
        if compressed != size:
            raise InvalidContainerError(
                f"{label}: entry {name!r} declares {compressed} stored bytes but size {size}"
            )
        if name in _ALLOWED and size > limits.entry_limit(name):
            raise InvalidContainerError(
                f"{label}: entry {name!r} declares {size} bytes; the limit is "
                f"{limits.entry_limit(name)}"
            )
        entries.append(_Entry(name=name, crc=crc, size=size, offset=offset))
        position = name_start + name_length + extra_length + comment_length
    if position != end_offset:
        raise InvalidContainerError(f"{label}: unexpected bytes after the central directory")
    return entries, cd_offset


def _entry_data(data: bytes, entry: _Entry, cd_offset: int, label: str) -> bytes:
    start = entry.offset
    if start + _LOCAL.size > cd_offset:
        raise InvalidContainerError(f"{label}: entry {entry.name!r} points outside the file")
    fields = _LOCAL.unpack(data[start : start + _LOCAL.size])
    (signature, _needed, flags, method, _time, _date, crc, compressed, size, name_length,
     extra_length) = fields  # fmt: skip
    name_start = start + _LOCAL.size
    data_start = name_start + name_length + extra_length
    if (
        signature != _LOCAL_SIGNATURE
        or data[name_start : name_start + name_length] != entry.name.encode("ascii")
        or (flags, method, crc, compressed, size) != (0, _STORED, entry.crc, entry.size, entry.size)
    ):
        raise InvalidContainerError(
            f"{label}: local header of {entry.name!r} disagrees with the central directory"
        )
    if data_start + entry.size > cd_offset:
        raise InvalidContainerError(
            f"{label}: entry {entry.name!r} declares {entry.size} bytes, more than the file holds"
        )
    content = data[data_start : data_start + entry.size]
    if zlib.crc32(content) != entry.crc:
        raise InvalidContainerError(f"{label}: entry {entry.name!r} fails its CRC-32 check")
    return content


def _check_format_first(manifest_bytes: bytes) -> None:
    """An unknown major version is reported as such, before layout rules that it may change."""
    try:
        parsed = loads_strict(manifest_bytes)
    except ValueError:
        return  # the full parse reports it
    if isinstance(parsed, dict):
        check_format_version(parsed)


def read_patch(source: Path | str | bytes, limits: ReadLimits | None = None) -> PatchFile:
    """Read and check everything but the signature (`verify_patch` does that)."""
    limits = limits or ReadLimits()
    data, label = _load(source, limits)
    entries, cd_offset = _central_directory(data, limits, label)
    by_name = {entry.name: entry for entry in entries}
    if MANIFEST_ENTRY in by_name:
        _check_format_first(_entry_data(data, by_name[MANIFEST_ENTRY], cd_offset, label))
    names = [entry.name for entry in entries]
    missing = [name for name in _REQUIRED if name not in by_name]
    extra = [name for name in names if name not in _ALLOWED]
    if missing or extra:
        raise InvalidContainerError(
            f"{label}: entries {names!r} are not a ppatch/1 set (missing {missing!r}, "
            f"unexpected {extra!r}); expected {MANIFEST_ENTRY!r}, {WEIGHTS_ENTRY!r} and "
            f"optionally {SIGNATURE_ENTRY!r}"
        )
    contents = {entry.name: _entry_data(data, entry, cd_offset, label) for entry in entries}
    manifest_bytes = contents[MANIFEST_ENTRY]
    manifest = Manifest.from_json_bytes(manifest_bytes)
    if manifest.canonical_bytes() != manifest_bytes:
        raise InvalidManifestError(
            ["is not canonical JSON (sorted keys, no whitespace, every field written)"]
        )
    weights = contents[WEIGHTS_ENTRY]
    _check_files(manifest, weights, label)
    info = inspect_weights(weights, max_header_bytes=limits.max_header_bytes)
    expected_shape = (manifest.patch.num_virtual_tokens, manifest.patch.hidden_size)
    if info.shape != expected_shape or info.dtype != manifest.patch.dtype:
        raise InvalidWeightsError(
            f"{WEIGHTS_ENTRY}: tensor is {info.dtype} {list(info.shape)!r} but the manifest's "
            f"patch declares {manifest.patch.dtype} {list(expected_shape)!r}"
        )
    array_from_weights(weights, max_header_bytes=limits.max_header_bytes)
    signature = None
    if SIGNATURE_ENTRY in contents:
        signature = Signature.from_json_bytes(contents[SIGNATURE_ENTRY])
        if signature.canonical_bytes() != contents[SIGNATURE_ENTRY]:
            raise InvalidContainerError(f"{label}: {SIGNATURE_ENTRY} is not canonical JSON")
    canonical = pack_patch(manifest, weights, signature)
    if canonical != data:
        offset = next(
            (i for i, (a, b) in enumerate(zip(canonical, data, strict=False)) if a != b),
            min(len(canonical), len(data)),
        )
        raise InvalidContainerError(
            f"{label}: not in the canonical ppatch/1 layout (first difference at byte {offset}: "
            "entry order, timestamps, permissions or headers differ from what 'ppatch pack' "
            "writes)"
        )
    return PatchFile(
        manifest=manifest, manifest_bytes=manifest_bytes, weights=weights, signature=signature
    )
