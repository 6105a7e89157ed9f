"""Fixtures for the folders whose tests run tiny untrained models (train/, eval/).

Each such folder's conftest imports them, so they apply there and nowhere else: `one_thread`
would import torch into every client test, and slow the registry-only ones, if it sat in
tests/client/conftest.py. tests/client/runtime has a `tiny_model` of its own (a loaded Llama, not
a saved folder) and runs without `one_thread`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ppatch.miniature.world import save_untrained_model

__all__ = ["one_thread", "tiny_model"]


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
    """An untrained miniature model saved once per session (per folder that imports it)."""
    return save_untrained_model(tmp_path_factory.mktemp("tiny") / "model", seed=1)
