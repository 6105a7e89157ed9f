"""The weights entry: deterministic safetensors bytes and a bounded, strict reader."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from patchfmt import InvalidWeightsError, array_from_weights, weights_from_array
from patchfmt.weights import canonical_weights, inspect_weights


def raw_file(header: dict[str, Any], data: bytes, *, declared: int | None = None) -> bytes:
    encoded = json.dumps(header).encode()
    length = len(encoded) if declared is None else declared
    return struct.pack("<Q", length) + encoded + data


def entry(dtype: str = "F32", shape: list[int] | None = None, end: int = 32) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape or [2, 4], "data_offsets": [0, end]}


@pytest.mark.parametrize(
    ("dtype", "numpy_dtype"), [("float32", np.float32), ("float16", np.float16)]
)
def test_round_trip_keeps_values(dtype: str, numpy_dtype: type) -> None:
    array = np.linspace(-2, 2, 24, dtype=np.float32).reshape(3, 8).astype(numpy_dtype)
    data = weights_from_array(array)
    assert inspect_weights(data).dtype == dtype
    np.testing.assert_array_equal(array_from_weights(data), array.astype(np.float32))
    # Readable by the reference implementation too.
    np.testing.assert_array_equal(safetensors_load(data)["prompt_embeddings"], array)


def test_bfloat16_rounds_to_nearest_even_and_reads_back() -> None:
    array = np.array([[1.0, -2.5, 3.140625, 1.00390625]], dtype=np.float32)
    data = weights_from_array(array, dtype="bfloat16")
    # 1.00390625 lies exactly between two bfloat16 values; ties go to the even one, 1.0.
    np.testing.assert_array_equal(array_from_weights(data), [[1.0, -2.5, 3.140625, 1.0]])
    assert inspect_weights(data).dtype == "bfloat16"


def test_bytes_are_deterministic_and_header_is_padded() -> None:
    array = np.ones((2, 3), dtype=np.float32)
    first, second = weights_from_array(array), weights_from_array(array.copy())
    assert first == second
    (length,) = struct.unpack("<Q", first[:8])
    assert length % 8 == 0
    assert first[8 : 8 + length].rstrip(b" ") == (
        b'{"prompt_embeddings":{"data_offsets":[0,24],"dtype":"F32","shape":[2,3]}}'
    )


def test_canonical_weights_normalizes_other_writers() -> None:
    array = np.arange(8, dtype=np.float16).reshape(2, 4)
    theirs = safetensors_save({"prompt_embeddings": array}, metadata={"format": "pt"})
    assert canonical_weights(theirs) == weights_from_array(array)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"1234", "starts with 8"),
        (raw_file({"prompt_embeddings": entry()}, bytes(32), declared=10**9), "limit is 65536"),
        (raw_file({"prompt_embeddings": entry()}, b"", declared=500), "has only"),
        (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "must be a JSON object"),
        (raw_file({"embeddings": entry()}, bytes(32)), "exactly one tensor 'prompt_embeddings'"),
        (
            raw_file({"prompt_embeddings": entry(), "extra": entry()}, bytes(32)),
            "exactly one tensor",
        ),
        (raw_file({"prompt_embeddings": entry("I32")}, bytes(32)), "dtype 'I32'"),
        (raw_file({"prompt_embeddings": entry(shape=[8])}, bytes(32)), "shape [8]"),
        (raw_file({"prompt_embeddings": entry(shape=[0, 4], end=0)}, b""), "shape [0, 4]"),
        (raw_file({"prompt_embeddings": entry(end=16)}, bytes(16)), "data_offsets [0, 16]"),
        (raw_file({"prompt_embeddings": entry()}, bytes(40)), "header describes"),
        (raw_file({"prompt_embeddings": {"dtype": "F32"}}, bytes(32)), "exactly 'dtype'"),
        (
            raw_file({"__metadata__": {"a": 1}, "prompt_embeddings": entry()}, bytes(32)),
            "'__metadata__'",
        ),
        (
            raw_file({"prompt_embeddings": entry()}, np.full(8, np.nan, np.float32).tobytes()),
            "8 NaN or infinite",
        ),
        (
            raw_file({"prompt_embeddings": entry()}, np.full(8, np.inf, np.float32).tobytes()),
            "NaN or infinite",
        ),
    ],
)
def test_reader_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidWeightsError) as caught:
        array_from_weights(data)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("weights.safetensors: ")


def test_duplicate_header_keys_are_refused() -> None:
    header = b'{"prompt_embeddings":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},'
    header += b'"prompt_embeddings":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}}'
    with pytest.raises(InvalidWeightsError, match="duplicate key"):
        array_from_weights(struct.pack("<Q", len(header)) + header + bytes(32))


@pytest.mark.parametrize(
    ("array", "dtype", "fragment"),
    [
        (np.ones((2, 2), dtype=np.float64), None, "'float64' is not supported"),
        (np.ones((2, 2), dtype=np.int32), "float32", "not a float type"),
        (np.ones((2, 2, 2), dtype=np.float32), None, "[2, 2, 2]"),
        (np.ones((0, 4), dtype=np.float32), None, "[0, 4]"),
        (np.array([[1.0, np.nan]], dtype=np.float32), None, "NaN or infinite"),
        (np.array([[1e6]], dtype=np.float32), "float16", "after conversion to float16"),
        (np.ones((2, 2), dtype=np.float32), "int8", "'int8' is not one of"),
    ],
)
def test_writer_refuses(array: np.ndarray, dtype: str | None, fragment: str) -> None:
    with pytest.raises(InvalidWeightsError) as caught:
        weights_from_array(array, dtype=dtype)
    assert fragment in str(caught.value)


def test_float64_converts_when_a_dtype_is_named() -> None:
    array = np.array([[0.5, 0.25]], dtype=np.float64)
    data = weights_from_array(array, dtype="float32")
    np.testing.assert_array_equal(array_from_weights(data), array)
