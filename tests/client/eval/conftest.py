"""Tiny untrained models and a patch for them, for fast evaluation tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ppatch.miniature import save_untrained_model


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread, above all on a shared machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(tmp_path_factory.mktemp("tiny") / "model", seed=1)


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(tmp_path_factory.mktemp("tiny-ref") / "reference", seed=5)


def write_patch_for(model: Path, path: Path, rows: int = 3, seed: int = 0) -> Path:
    import numpy

    from patchfmt import build_manifest, fingerprint_model, weights_from_array, write_patch
    from ppatch.train.modeling import load_model

    hidden = load_model(model, "cpu").hidden_size
    array = numpy.random.default_rng(seed).normal(size=(rows, hidden)).astype("float32")
    weights = weights_from_array(array)
    manifest = build_manifest(
        {
            "name": "acme/toxicity",
            "version": "1.0.0",
            "domain": "toxicity",
            "summary": "test patch",
            "license": "Apache-2.0",
            "base_model": {"id": model.name, "fingerprint": fingerprint_model(model)},
        },
        weights,
    )
    write_patch(path, manifest, weights)
    return path


@pytest.fixture(scope="session")
def tiny_patch(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_patch_for(tiny_model, tmp_path_factory.mktemp("patch") / "detox.ppatch")
