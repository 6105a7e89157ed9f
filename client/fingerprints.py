"""A model's fingerprint, cached under the one ppatch home.

`patchfmt.fingerprint_model` defaults to the XDG cache, because the format library knows
nothing of `PPATCH_HOME`. Every client path that fingerprints a model (install, load_model,
apply, eval, train, import-peft, the CLI) goes through `model_fingerprint`, so all of them share
one cache under `constants.fingerprint_cache_dir()` and a model is hashed once, not once per
cache (tests/client/test_fingerprints.py checks that no other client module calls patchfmt's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ppatch import constants

__all__ = ["model_fingerprint"]


def model_fingerprint(
    model: str | os.PathLike[str] | Path, *, progress: Callable[[int], None] | None = None
) -> str:
    """`sha256:<hex>` of the model's tensors, from the cache when its files did not change."""
    from patchfmt import fingerprint_model

    return fingerprint_model(
        os.fspath(model), cache_dir=constants.fingerprint_cache_dir(), progress=progress
    )
