"""What differs between the transformers releases ppatch supports (the `ml` extra's floor on).

Transformers 5.24 renamed the cache argument and output field `past_key_values` to `cache`
(the old argument still works there, with a deprecation warning). Both spellings are read from
the model itself, so one code path serves every supported release;
tests/client/runtime/test_transformers_floor.py runs the runtime's tests on the floor release.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_keyword", "output_cache", "without_cache"]

_NAMES = ("cache", "past_key_values")


def cache_keyword(model: Any) -> str:
    """The keyword `model`'s forward pass and `generate` take a cache by."""
    return _keyword_of(type(model).forward)


@functools.cache
def _keyword_of(forward: Any) -> str:
    parameters = inspect.signature(forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The cache a model's output carries, whichever name the release gives it."""
    for name in _NAMES:
        if name in output:
            return output[name]
    return None


def without_cache(output: Any) -> Any:
    """The output rebuilt without its cache field, as a call without a cache returns it.

    A `ModelOutput` cannot drop a key, so it is rebuilt from the other fields.
    """
    return type(output)(**{key: value for key, value in output.items() if key not in _NAMES})
