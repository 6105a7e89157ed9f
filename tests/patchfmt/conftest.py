"""Fixtures for the format library: fixed manifests, weights, keys and tiny safetensors models."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import save_file

from patchfmt import Manifest, build_manifest, pack_patch, sign_manifest, weights_from_array

FINGERPRINT = "sha256:" + "ab" * 32


def human_fields() -> dict[str, Any]:
    """What a vendor writes by hand; `build_manifest` fills in the rest."""
    return {
        "name": "acme/toxicity",
        "version": "1.2.0",
        "domain": "toxicity",
        "summary": "Steers the model away from toxic completions",
        "license": "Apache-2.0",
        "base_model": {"id": "acme/tiny-lm", "revision": "main", "fingerprint": FINGERPRINT},
        "training": {"method": "sft+dpo", "init_text": "Be kind.", "learning_rate": 0.001},
        "evaluation": {"toxicity_probability": 0.12},
        "created": "2026-11-28T10:00:00Z",
        "requires": "0.1.0",
    }


def fixed_weights(tokens: int = 4, hidden: int = 8, dtype: str | None = None) -> bytes:
    array = (np.arange(tokens * hidden, dtype=np.float32).reshape(tokens, hidden) - 7) / 16
    return weights_from_array(array, dtype=dtype)


def fixed_key() -> Ed25519PrivateKey:
    # ed25519 signatures are deterministic, so a fixed key gives fixed bytes.
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="session")
def fixed_signed_file() -> bytes:
    """The packed, signed patch of the fixed fields, weights and key (immutable bytes)."""
    weights = fixed_weights()
    manifest = build_manifest(human_fields(), weights)
    signature = sign_manifest(manifest.canonical_bytes(), fixed_key())
    return pack_patch(manifest, weights, signature)


@pytest.fixture
def fields() -> dict[str, Any]:
    return human_fields()


@pytest.fixture
def make_weights() -> Callable[..., bytes]:
    return fixed_weights


@pytest.fixture
def weights() -> bytes:
    return fixed_weights()


@pytest.fixture
def manifest(weights: bytes) -> Manifest:
    return build_manifest(human_fields(), weights)


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    return fixed_key()


def write_model(
    folder: Path,
    tensors: Mapping[str, np.ndarray],
    shards: list[list[str]] | None = None,
    *,
    index: bool = True,
) -> Path:
    """A Hugging Face style folder: one file, or `shards` (lists of tensor names) + index."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards is None:
        save_file(dict(tensors), str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for number, names in enumerate(shards, start=1):
        file_name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file({name: tensors[name] for name in names}, str(folder / file_name))
        weight_map.update(dict.fromkeys(names, file_name))
    if index:
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
    return folder


def tiny_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float16),
        "model.layers.0.mlp.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "model.layers.0.norm.weight": np.ones(8, dtype=np.float32),
        "model.layers.1.mlp.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "lm_head.weight": rng.standard_normal((16, 8)).astype(np.float16),
        "step": np.array(3, dtype=np.int64),
    }


@pytest.fixture
def make_model() -> Callable[..., Path]:
    return write_model


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    return tiny_tensors()
