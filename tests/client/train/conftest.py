"""A tiny untrained model, saved once per session, for fast training tests."""

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
def other_tokenizer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(
        tmp_path_factory.mktemp("tiny-other") / "model", seed=2, extra_words=("zebra",)
    )
