"""The fingerprint of a model given as one GGUF file: its tensors as stored."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from patchfmt import InvalidWeightsError, ModelNotFoundError, fingerprint_model, resolve_model_path

gguf = pytest.importorskip("gguf")  # a test dependency (pyproject's test extra): always present


def write_gguf(
    path: Path, tensors: dict[str, np.ndarray], quantized: frozenset[str] = frozenset()
) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    for name, array in tensors.items():
        if name in quantized:
            data = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def expected_fingerprint(tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> str:
    """docs/format.md's layout over (GGUF type, GGUF dimensions, stored bytes), written out
    independently of the implementation."""
    leaves = []
    for name in sorted(tensors, key=lambda n: n.encode()):
        dtype, shape, data = tensors[name]
        prefix = b"ppatch-tensor/1\x00"
        prefix += struct.pack("<Q", len(name.encode())) + name.encode()
        prefix += struct.pack("<Q", len(dtype)) + dtype.encode()
        prefix += struct.pack("<Q", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        prefix += struct.pack("<Q", len(data))
        leaves.append(hashlib.sha256(prefix + data).digest())
    root = b"ppatch-fingerprint/1\x00" + struct.pack("<Q", len(leaves)) + b"".join(leaves)
    return "sha256:" + hashlib.sha256(root).hexdigest()


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "token_embd.weight": rng.standard_normal((4, 32)).astype(np.float32),
        "output_norm.weight": rng.standard_normal(32).astype(np.float32),
    }


def test_matches_the_documented_layout_over_stored_tensors(
    tmp_path: Path, arrays: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "model.gguf"
    write_gguf(path, arrays, quantized=frozenset({"token_embd.weight"}))
    quantized = gguf.quants.quantize(arrays["token_embd.weight"], gguf.GGMLQuantizationType.Q8_0)
    expected = expected_fingerprint(
        {
            # GGUF lists dimensions innermost first: a (4, 32) matrix is stored as [32, 4].
            "token_embd.weight": ("GGUF_Q8_0", (32, 4), quantized.tobytes()),
            "output_norm.weight": ("GGUF_F32", (32,), arrays["output_norm.weight"].tobytes()),
        }
    )
    assert fingerprint_model(path, cache_dir=tmp_path / "cache") == expected
    assert resolve_model_path(path) == path.resolve()


def test_quantization_and_values_count(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    plain, quantized, changed = (tmp_path / f"{n}.gguf" for n in ("plain", "q8", "changed"))
    write_gguf(plain, arrays)
    write_gguf(quantized, arrays, quantized=frozenset({"token_embd.weight"}))
    arrays["output_norm.weight"][0] += 1
    write_gguf(changed, arrays)
    prints = {
        fingerprint_model(p, cache_dir=tmp_path / "cache") for p in (plain, quantized, changed)
    }
    assert len(prints) == 3


def test_the_fingerprint_is_cached_by_file_state(
    tmp_path: Path, arrays: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchfmt import fingerprint as fingerprint_module

    path = tmp_path / "model.gguf"
    write_gguf(path, arrays)
    first = fingerprint_model(path, cache_dir=tmp_path / "cache")

    def no_reading(*args: object) -> bytes:
        raise AssertionError("a cached fingerprint reads no tensor")

    monkeypatch.setattr(fingerprint_module, "_tensor_digest", no_reading)
    assert fingerprint_model(path, cache_dir=tmp_path / "cache") == first


def test_a_damaged_gguf_file_is_refused(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    path = tmp_path / "model.gguf"
    write_gguf(path, arrays)
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(InvalidWeightsError, match=r"model\.gguf"):
        fingerprint_model(path, cache_dir=tmp_path / "cache")
    path.write_bytes(b"GGUF" + b"\x00" * 12)
    with pytest.raises(InvalidWeightsError, match=r"model\.gguf"):
        fingerprint_model(path, cache_dir=tmp_path / "cache")


def test_other_files_are_not_models(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf file"):
        fingerprint_model(path)
