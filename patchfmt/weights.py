"""The `weights.safetensors` entry: one tensor, `prompt_embeddings`, `[num_virtual_tokens, hidden]`.

Parsing here is our own bounded reader of the safetensors layout (an 8-byte little-endian header
length, a JSON header, the raw data), so that every size is checked before anything is read or
allocated. Writing produces one byte form for one array: the canonical header padded with spaces
to a multiple of 8 bytes, then the little-endian data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from patchfmt.canonical import canonical_json, loads_strict
from patchfmt.errors import InvalidWeightsError

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "DTYPES",
    "TENSOR_NAME",
    "WeightsInfo",
    "array_from_weights",
    "canonical_weights",
    "inspect_weights",
    "weights_from_array",
]

TENSOR_NAME = "prompt_embeddings"
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

# Manifest dtype name -> (safetensors dtype, bytes per element).
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
}
_BY_SAFETENSORS = {code: name for name, (code, _) in DTYPES.items()}


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file's header declares, after validation."""

    dtype: str  # manifest name: float32, float16 or bfloat16
    shape: tuple[int, int]
    data_offset: int  # where the tensor data starts in the file
    nbytes: int


def _problem(message: str, source: str) -> InvalidWeightsError:
    return InvalidWeightsError(f"{source}: {message}")


def inspect_weights(
    data: bytes,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    source: str = "weights.safetensors",
) -> WeightsInfo:
    """Validate the safetensors structure of `data` (not the values) and describe the tensor."""
    if len(data) < 8:
        raise _problem(f"file is {len(data)} bytes; a safetensors file starts with 8", source)
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > max_header_bytes:
        raise _problem(
            f"header declares {header_length} bytes; the limit is {max_header_bytes}", source
        )
    if 8 + header_length > len(data):
        raise _problem(
            f"header declares {header_length} bytes but the file has only {len(data) - 8} "
            "after the length field",
            source,
        )
    try:
        header = loads_strict(data[8 : 8 + header_length])
    except ValueError as error:
        raise _problem(f"header is not valid JSON ({error})", source) from None
    if not isinstance(header, dict):
        raise _problem(f"header must be a JSON object, found {type(header).__name__}", source)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _problem("'__metadata__' must map strings to strings", source)
    if list(header) != [TENSOR_NAME]:
        raise _problem(
            f"expected exactly one tensor {TENSOR_NAME!r}, found {sorted(header)!r}", source
        )
    entry: Any = header[TENSOR_NAME]
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _problem(
            f"tensor {TENSOR_NAME!r} must have exactly 'dtype', 'shape' and 'data_offsets'",
            source,
        )
    code = entry["dtype"]
    if code not in _BY_SAFETENSORS:
        raise _problem(
            f"tensor dtype {code!r} is not supported; expected one of {sorted(_BY_SAFETENSORS)!r}",
            source,
        )
    shape = entry["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(d) is int and d >= 1 for d in shape)
    ):
        raise _problem(
            f"tensor shape {shape!r} must be [num_virtual_tokens, hidden_size], both >= 1",
            source,
        )
    offsets = entry["data_offsets"]
    itemsize = DTYPES[_BY_SAFETENSORS[code]][1]
    nbytes = shape[0] * shape[1] * itemsize
    if offsets != [0, nbytes]:
        raise _problem(
            f"data_offsets {offsets!r} must be [0, {nbytes}] for shape {shape!r} and dtype "
            f"{code!r}",
            source,
        )
    data_offset = 8 + header_length
    if len(data) != data_offset + nbytes:
        raise _problem(
            f"file is {len(data)} bytes but its header describes {data_offset + nbytes}",
            source,
        )
    return WeightsInfo(
        dtype=_BY_SAFETENSORS[code],
        shape=(shape[0], shape[1]),
        data_offset=data_offset,
        nbytes=nbytes,
    )


def _to_float32(raw: bytes, dtype: str, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    if dtype == "float32":
        values = np.frombuffer(raw, dtype="<f4")
    elif dtype == "float16":
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:  # bfloat16: the upper half of a float32
        values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return values.astype(np.float32).reshape(shape)


def array_from_weights(
    data: bytes,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    source: str = "weights.safetensors",
) -> npt.NDArray[np.float32]:
    """The embeddings as float32 `[num_virtual_tokens, hidden_size]`; refuses NaN and Inf."""
    info = inspect_weights(data, max_header_bytes=max_header_bytes, source=source)
    array = _to_float32(data[info.data_offset :], info.dtype, info.shape)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise _problem(f"tensor {TENSOR_NAME!r} holds {bad} NaN or infinite values", source)
    return array


def _encode(array: npt.NDArray[Any], dtype: str) -> bytes:
    if dtype == "float32":
        return array.astype("<f4").tobytes()
    if dtype == "float16":
        return array.astype("<f2").tobytes()
    # bfloat16 by round-to-nearest-even on the float32 bits.
    bits = array.astype("<f4").view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def weights_from_array(array: npt.NDArray[Any], *, dtype: str | None = None) -> bytes:
    """Deterministic safetensors bytes for a 2-D float array.

    `dtype` ("float32", "float16", "bfloat16") converts; by default the array's own dtype is
    kept, which must be float32 or float16.
    """
    array = np.asarray(array)
    if dtype is None:
        if array.dtype == np.float32:
            dtype = "float32"
        elif array.dtype == np.float16:
            dtype = "float16"
        else:
            raise InvalidWeightsError(
                f"array dtype {str(array.dtype)!r} is not supported; pass float32 or float16, "
                "or name a target dtype (float32, float16, bfloat16)"
            )
    elif dtype not in DTYPES:
        raise InvalidWeightsError(f"dtype {dtype!r} is not one of {sorted(DTYPES)!r}")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidWeightsError(
            f"array shape {list(array.shape)!r} must be [num_virtual_tokens, hidden_size], "
            "both >= 1"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidWeightsError(f"array dtype {str(array.dtype)!r} is not a float type")
    with np.errstate(over="ignore"):  # overflow is detected below, with a clear message
        raw = _encode(np.ascontiguousarray(array), dtype)
    # Conversion to a narrower type may overflow to infinity; check what is stored.
    if not np.isfinite(_to_float32(raw, dtype, (array.shape[0], array.shape[1]))).all():
        raise InvalidWeightsError(
            f"array holds NaN or infinite values (after conversion to {dtype}); only finite "
            "values are allowed"
        )
    code, _ = DTYPES[dtype]
    header = canonical_json(
        {
            TENSOR_NAME: {
                "data_offsets": [0, len(raw)],
                "dtype": code,
                "shape": [int(array.shape[0]), int(array.shape[1])],
            }
        }
    )
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw


def canonical_weights(
    data: bytes, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, source: str = "weights"
) -> bytes:
    """Re-serialize any valid weights file to the canonical bytes, keeping its dtype."""
    info = inspect_weights(data, max_header_bytes=max_header_bytes, source=source)
    array = array_from_weights(data, max_header_bytes=max_header_bytes, source=source)
    return weights_from_array(array, dtype=info.dtype)
