"""Tiny untrained models and a patch for them, for fast evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch.miniature.world import save_untrained_model
from tests.client import tiny_models

# Shared with the other tiny-model folder; pytest finds fixtures among this module's names.
one_thread = tiny_models.one_thread
tiny_model = tiny_models.tiny_model


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(tmp_path_factory.mktemp("tiny-ref") / "reference", seed=5)


def write_patch_for(
    model: Path, path: Path, rows: int = 3, seed: int = 0, version: str = "1.0.0"
) -> Path:
    import numpy

    from patchfmt import build_manifest, fingerprint_model, weights_from_array, write_patch
    from ppatch.train.modeling import load_model

    hidden = load_model(model, "cpu").hidden_size
    array = numpy.random.default_rng(seed).normal(size=(rows, hidden)).astype("float32")
    weights = weights_from_array(array)
    manifest = build_manifest(
        {
            "name": "acme/toxicity",
            "version": version,
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
