"""The base-model fingerprint: one digest over a model's tensors, however they are sharded.

A GGUF file (one file holding the whole model, possibly quantized) is fingerprinted the same
way over its tensors as stored: the GGUF tensor type (`GGUF_Q4_1`), the dimensions in the file's
order and the stored bytes, never the dequantized values (docs/format.md says why).

Each tensor gets its own SHA-256 over a length-prefixed description (name, dtype, shape, size)
followed by its raw bytes; the fingerprint is the SHA-256 of the per-tensor digests in tensor-name
order (docs/format.md gives the exact bytes). Hashing tensors separately is what lets a thread
pool read and hash them in parallel (hashlib releases the GIL on large updates); reading is
streamed in fixed-size chunks at the offsets the safetensors headers give, so memory stays
constant whatever the model's size. Results are cached by the (name, size, mtime_ns, ctime_ns,
inode) of every weight file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchfmt.atomic import atomic_write_bytes
from patchfmt.canonical import canonical_json, loads_strict
from patchfmt.errors import FingerprintMismatchError, InvalidWeightsError, ModelNotFoundError

if TYPE_CHECKING:  # at run time only its method is called; pydantic loads only when needed
    from patchfmt.manifest import Manifest

__all__ = [
    "CHUNK_BYTES",
    "GGUF_SUFFIX",
    "INDEX_FILE",
    "TensorLocation",
    "check_fingerprint",
    "default_cache_dir",
    "fingerprint_model",
    "is_gguf_file",
    "model_config_file",
    "model_weight_files",
    "read_tensor_locations",
    "resolve_model_path",
]

INDEX_FILE = "model.safetensors.index.json"
GGUF_SUFFIX = ".gguf"
CHUNK_BYTES = 8 * 1024 * 1024
MAX_SHARD_HEADER_BYTES = 100 * 1024 * 1024  # the limit safetensors itself enforces
MAX_INDEX_BYTES = 64 * 1024 * 1024
_TENSOR_DOMAIN = b"ppatch-tensor/1\x00"
_FINGERPRINT_DOMAIN = b"ppatch-fingerprint/1\x00"
_CACHE_FORMAT = "ppatch-fingerprint-cache/1"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_DTYPE = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
# A branch, tag or commit after `repo@` (what the Hugging Face cache's refs hold).
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
_OTHER_CHECKPOINTS = frozenset({".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack"})

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TensorLocation:
    """Where one tensor's bytes lie: `nbytes` bytes from absolute offset `start` of `file`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int
    nbytes: int


# -- locating the model ----------------------------------------------------------------------


def _expanded(path: Path) -> Path:
    """`~` and `~user` expanded; as typed for an unknown user (`~typo/model`), which then names
    nothing, rather than letting `expanduser`'s RuntimeError escape."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def _looks_like_a_path(text: str) -> bool:
    """A path a person typed, as opposed to a Hugging Face repo id (`org/name`, `name`)."""
    if text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") >= 2:
        return True
    first, slash, _rest = text.partition("/")
    return bool(slash) and _expanded(Path(first)).is_dir()


def _close_folders(path: Path) -> list[str]:
    """Folders next to a missing `path` whose names are close to its name (a typo's fix)."""
    parent = path.parent
    try:
        names = [entry.name for entry in parent.iterdir() if entry.is_dir()]
    except OSError:
        return []
    close = difflib.get_close_matches(path.name, names, n=2, cutoff=0.75)
    return [str(parent / name) for name in close]  # Path(".") / name is just name


def _split_revision(text: str) -> tuple[str, str | None]:
    """`org/name@revision` (a branch, tag or commit) for a cache lookup; else no revision."""
    repo, at, revision = text.partition("@")
    if at and _REPO_ID.fullmatch(repo) and _REVISION.fullmatch(revision):
        return repo, revision
    return text, None


def is_gguf_file(path: Path) -> bool:
    """A model given as one GGUF file rather than a folder."""
    return path.suffix.lower() == GGUF_SUFFIX and path.is_file()


def resolve_model_path(model: str | Path) -> Path:
    """A local model directory, a local `.gguf` file, or the snapshot of a repo id (`org/name` or
    `org/name@revision`) in the local Hugging Face cache.

    Nothing is ever downloaded: the cache lookup runs with `local_files_only=True`.
    """
    text = str(model)
    path = _expanded(Path(model))
    if path.is_dir() or is_gguf_file(path):
        return path.resolve()
    if path.exists():
        raise ModelNotFoundError(
            text,
            f"model {text!r} is a file but not a .gguf file; expected a directory in Hugging "
            "Face layout or a GGUF file",
        )
    close = _close_folders(path)
    hint = f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
    if _looks_like_a_path(text):
        where = "" if path.parent.is_dir() else f" (nor does its folder {str(path.parent)!r})"
        raise ModelNotFoundError(text, f"model folder {text!r} does not exist{where}{hint}")
    repo_id, revision = _split_revision(text)
    if not _REPO_ID.fullmatch(repo_id):
        # No download command to suggest: it would fail on the same text.
        raise ModelNotFoundError(
            text,
            f"model {text!r} is neither a local directory nor a Hugging Face repo id "
            f"(org/name or org/name@revision){hint}",
        )
    # Imported here: only this path needs huggingface_hub, and it is slow to import.
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True)
        return Path(snapshot).resolve()
    except (OSError, ValueError):
        pass
    at = f" at revision {revision!r}" if revision else ""
    # A close local folder is the likelier fix than a download; say only one of the two.
    fetch = f" (ppatch never downloads models; fetch it first, e.g. 'hf download {repo_id}')"
    raise ModelNotFoundError(
        text,
        f"model {text!r} is neither a local directory nor a repo id{at} in the local Hugging "
        f"Face cache{hint or fetch}",
    )


def _read_index(index_path: Path) -> dict[str, str]:
    label = str(index_path)
    size = index_path.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise InvalidWeightsError(f"{label}: is {size} bytes; at most {MAX_INDEX_BYTES}")
    try:
        index = loads_strict(index_path.read_bytes())
    except ValueError as error:
        raise InvalidWeightsError(f"{label}: not valid JSON ({error})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise InvalidWeightsError(
            f"{label}: expected an object with 'weight_map' mapping tensor names to file names"
        )
    for file_name in set(weight_map.values()):
        if "/" in file_name or "\\" in file_name or file_name.startswith(".") or not file_name:
            raise InvalidWeightsError(
                f"{label}: shard name {file_name!r} must be a plain file name in the model folder"
            )
    return weight_map


def model_weight_files(model_dir: Path) -> list[Path]:
    """The files that hold the model: a GGUF file itself; in a folder, the index's safetensors
    shards, else every top-level safetensors file."""
    if is_gguf_file(model_dir):
        return [model_dir]
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        names = sorted(set(_read_index(index_path).values()))
        missing = [name for name in names if not (model_dir / name).is_file()]
        if missing:
            raise ModelNotFoundError(
                str(model_dir),
                f"{index_path}: lists shards that are missing: {', '.join(missing)}",
            )
        return [model_dir / name for name in names]
    files = sorted(p for p in model_dir.glob("*.safetensors") if p.is_file())
    if not files:
        raise ModelNotFoundError(str(model_dir), _no_weights_message(model_dir))
    return files


def _no_weights_message(model_dir: Path) -> str:
    """Why a folder is not a safetensors model: other checkpoint formats, or no weights at all."""
    names = sorted(entry.name for entry in model_dir.iterdir())
    others = [name for name in names if Path(name).suffix in _OTHER_CHECKPOINTS]
    if others:
        return (
            f"no *.safetensors weights in {str(model_dir)!r} (found {', '.join(others)}); "
            "ppatch fingerprints safetensors models only (convert the checkpoint to "
            "safetensors first)"
        )
    if not names:
        return f"model folder {str(model_dir)!r} is empty: it has no weights and no config.json"
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (
        f"model folder {str(model_dir)!r} has no weights, only {shown}; a model folder needs "
        "its *.safetensors files (was the download interrupted or filtered?)"
    )


def model_config_file(model_dir: Path) -> Path:
    """`config.json` of a model folder, which transformers needs to load it."""
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(
            str(model_dir),
            f"model folder {str(model_dir)!r} has no config.json; a Hugging Face model folder "
            "holds config.json next to its weights",
        )
    return config


def _shard_tensors(path: Path) -> list[TensorLocation]:
    label = str(path)
    file_size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise InvalidWeightsError(f"{label}: is {file_size} bytes; not a safetensors file")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(MAX_SHARD_HEADER_BYTES, file_size - 8):
            raise InvalidWeightsError(
                f"{label}: header declares {header_length} bytes, more than the file or the "
                f"{MAX_SHARD_HEADER_BYTES}-byte limit allows"
            )
        raw_header = stream.read(header_length)
    try:
        header = loads_strict(raw_header)
    except ValueError as error:
        raise InvalidWeightsError(f"{label}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise InvalidWeightsError(f"{label}: header must be a JSON object")
    data_start = 8 + header_length
    data_size = file_size - data_start
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors.append(_tensor_location(path, name, entry, data_start, data_size))
    return tensors


def _tensor_location(
    path: Path, name: str, entry: Any, data_start: int, data_size: int
) -> TensorLocation:
    label = f"{path}: tensor {name!r}"
    try:
        name.encode("utf-8")  # the hashed form; JSON's \ud800 escapes allow lone surrogates
    except UnicodeEncodeError:
        raise InvalidWeightsError(f"{label}: the name is not valid UTF-8 text") from None
    if not isinstance(entry, dict):
        raise InvalidWeightsError(f"{label}: entry must be an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not _DTYPE.fullmatch(dtype):
        raise InvalidWeightsError(f"{label}: dtype {dtype!r} is not a safetensors dtype")
    # Each dimension is hashed as a u64 (docs/format.md, 6.2): a larger one cannot be encoded.
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**64 for d in shape):
        raise InvalidWeightsError(
            f"{label}: shape {shape!r} must be a list of integers from 0 to 2**64 - 1"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise InvalidWeightsError(
            f"{label}: data_offsets {offsets!r} must be [begin, end] within the "
            f"{data_size}-byte data section"
        )
    nbytes = offsets[1] - offsets[0]
    itemsize = _ITEMSIZE.get(dtype)
    if itemsize is not None and nbytes != prod(shape) * itemsize:
        raise InvalidWeightsError(
            f"{label}: {nbytes} bytes do not hold shape {shape!r} of {dtype} "
            f"({prod(shape) * itemsize} bytes)"
        )
    return TensorLocation(
        name=name,
        dtype=dtype,
        shape=tuple(shape),
        file=path,
        start=data_start + offsets[0],
        nbytes=nbytes,
    )


def read_tensor_locations(model_dir: Path, files: list[Path]) -> list[TensorLocation]:
    """Every tensor of the model, sorted by name; duplicates and index disagreements refused."""
    if is_gguf_file(model_dir):
        return _gguf_tensors(model_dir)
    located: dict[str, TensorLocation] = {}
    for path in files:
        for tensor in _shard_tensors(path):
            if tensor.name in located:
                raise InvalidWeightsError(
                    f"tensor {tensor.name!r} appears in both {located[tensor.name].file.name!r} "
                    f"and {path.name!r}"
                )
            located[tensor.name] = tensor
    if not located:
        raise InvalidWeightsError(f"{str(model_dir)!r}: the safetensors files hold no tensors")
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        weight_map = _read_index(index_path)
        for name, tensor in located.items():
            if weight_map.get(name) != tensor.file.name:
                raise InvalidWeightsError(
                    f"{index_path}: maps tensor {name!r} to {weight_map.get(name)!r} but it is "
                    f"in {tensor.file.name!r}"
                )
        absent = sorted(set(weight_map) - set(located))
        if absent:
            raise InvalidWeightsError(
                f"{index_path}: lists tensors no shard holds: {', '.join(absent[:5])}"
            )
    return [located[name] for name in sorted(located, key=lambda n: n.encode("utf-8"))]


def _gguf_tensors(path: Path) -> list[TensorLocation]:
    """The tensors of a GGUF file as stored, read by the `gguf` package's reader (llama.cpp's
    own Python reader), which validates the header and the tensors' extents."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise InvalidWeightsError(
            f"{path}: reading a GGUF model needs the 'gguf' package (pip install gguf)"
        ) from None
    try:
        reader = GGUFReader(path, "r")
    except (ValueError, KeyError, IndexError, OSError, struct.error) as error:
        raise InvalidWeightsError(f"{path}: not a readable GGUF file ({error})") from None
    file_size = path.stat().st_size
    located: dict[str, TensorLocation] = {}
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if tensor.name in located or end > file_size:
            raise InvalidWeightsError(f"{path}: tensor {tensor.name!r} is repeated or truncated")
        located[tensor.name] = TensorLocation(
            name=tensor.name,
            dtype=f"GGUF_{tensor.tensor_type.name}",
            shape=tuple(int(d) for d in tensor.shape),
            file=path,
            start=int(tensor.data_offset),
            nbytes=int(tensor.n_bytes),
        )
    if not located:
        raise InvalidWeightsError(f"{path}: the GGUF file holds no tensors")
    return [located[name] for name in sorted(located, key=lambda n: n.encode("utf-8"))]


# -- hashing ---------------------------------------------------------------------------------


def _tensor_prefix(tensor: TensorLocation) -> bytes:
    name = tensor.name.encode("utf-8")
    dtype = tensor.dtype.encode("ascii")
    return b"".join(
        [
            _TENSOR_DOMAIN,
            struct.pack("<Q", len(name)),
            name,
            struct.pack("<Q", len(dtype)),
            dtype,
            struct.pack("<Q", len(tensor.shape)),
            *(struct.pack("<Q", d) for d in tensor.shape),
            struct.pack("<Q", tensor.nbytes),
        ]
    )


def _tensor_digest(tensor: TensorLocation, progress: Progress | None) -> bytes:
    digest = hashlib.sha256(_tensor_prefix(tensor))
    buffer = bytearray(min(CHUNK_BYTES, max(tensor.nbytes, 1)))
    view = memoryview(buffer)
    remaining = tensor.nbytes
    # Unbuffered: readinto fills our buffer directly, releasing the GIL like the hash does.
    with tensor.file.open("rb", buffering=0) as stream:
        stream.seek(tensor.start)
        while remaining:
            count = stream.readinto(view[: min(remaining, len(buffer))])
            if not count:
                raise InvalidWeightsError(
                    f"{tensor.file}: ended while reading tensor {tensor.name!r}"
                )
            digest.update(view[:count])
            remaining -= count
            if progress is not None:
                progress(count)
    return digest.digest()


def _combine(digests: list[bytes]) -> str:
    root = hashlib.sha256(_FINGERPRINT_DOMAIN + struct.pack("<Q", len(digests)))
    for digest in digests:
        root.update(digest)
    return "sha256:" + root.hexdigest()


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 16))


def _hash_tensors(
    tensors: list[TensorLocation], workers: int, progress: Progress | None
) -> list[bytes]:
    if workers <= 1 or len(tensors) == 1:
        return [_tensor_digest(tensor, progress) for tensor in tensors]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ppatch-hash") as pool:
        # Largest first keeps the pool busy to the end; results are put back in name order.
        order = sorted(range(len(tensors)), key=lambda i: -tensors[i].nbytes)
        futures = {i: pool.submit(_tensor_digest, tensors[i], progress) for i in order}
        return [futures[i].result() for i in range(len(tensors))]


# -- cache -----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/ppatch/fingerprints`, else `~/.cache/ppatch/fingerprints`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ppatch" / "fingerprints"


def _file_stats(files: list[Path]) -> list[list[Any]]:
    stats = []
    for path in files:
        info = path.stat()
        # ctime too: an in-place edit can restore the mtime (`touch -r`, `os.utime`), but
        # not the ctime, which only the kernel sets.
        stats.append([path.name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino])
    return stats


def _cache_path(cache_dir: Path, model_dir: Path) -> Path:
    key = hashlib.sha256(str(model_dir).encode("utf-8")).hexdigest()[:32]
    return cache_dir / f"{key}.json"


def _cached(cache_file: Path, model_dir: Path, stats: list[list[Any]]) -> str | None:
    try:
        entry = json.loads(cache_file.read_bytes())
    except (OSError, ValueError):
        return None  # absent or damaged: recompute
    if (
        isinstance(entry, dict)
        and entry.get("format") == _CACHE_FORMAT
        and entry.get("model") == str(model_dir)
        and entry.get("files") == stats
        and isinstance(entry.get("fingerprint"), str)
    ):
        return str(entry["fingerprint"])
    return None


def _store(cache_file: Path, model_dir: Path, stats: list[list[Any]], fingerprint: str) -> None:
    payload = canonical_json(
        {
            "format": _CACHE_FORMAT,
            "model": str(model_dir),
            "files": stats,
            "fingerprint": fingerprint,
        }
    )
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file, payload)
    except OSError:
        pass  # a cache that cannot be written only costs time on the next call


def fingerprint_model(
    model: str | Path,
    *,
    cache_dir: Path | str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> str:
    """`sha256:<hex>` of the model's tensors (docs/format.md, "Base-model fingerprint").

    `progress`, if given, is called from worker threads with the number of bytes just hashed.
    """
    model_dir = resolve_model_path(model)
    files = model_weight_files(model_dir)
    stats = _file_stats(files)
    cache_file = _cache_path(Path(cache_dir) if cache_dir else default_cache_dir(), model_dir)
    cached = _cached(cache_file, model_dir, stats)
    if cached is not None:
        return cached
    tensors = read_tensor_locations(model_dir, files)
    fingerprint = _combine(_hash_tensors(tensors, workers or _default_workers(), progress))
    # A file changed while it was read gives a fingerprint of no single state: do not keep it.
    if _file_stats(files) == stats:
        _store(cache_file, model_dir, stats, fingerprint)
    return fingerprint


def check_fingerprint(manifest: Manifest, fingerprint: str) -> None:
    """Raise `FingerprintMismatchError` unless the manifest accepts this model fingerprint."""
    if not manifest.accepts_fingerprint(fingerprint):
        raise FingerprintMismatchError(
            manifest.base_model.fingerprint,
            fingerprint,
            compatible=manifest.base_model.compatible_fingerprints,
            base_model_id=manifest.base_model.id,
        )
