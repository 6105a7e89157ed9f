"""A tiny untrained model, saved once per session, for fast training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch.miniature.world import save_untrained_model
from tests.client import tiny_models

# Shared with the other tiny-model folder; pytest finds fixtures among this module's names.
one_thread = tiny_models.one_thread
tiny_model = tiny_models.tiny_model


@pytest.fixture(scope="session")
def other_tokenizer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(
        tmp_path_factory.mktemp("tiny-other") / "model", seed=2, extra_words=("zebra",)
    )
