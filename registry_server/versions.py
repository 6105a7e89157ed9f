"""Ordering release versions the SemVer way (build metadata does not count), via patchfmt."""

from __future__ import annotations

import functools

from semantic_version import Version

import patchfmt

__all__ = ["is_prerelease", "version_key"]


@functools.lru_cache(maxsize=8192)
def version_key(text: str) -> tuple[Version, str]:
    """A sort key for a stored version string: SemVer precedence, then the text for ties.

    Cached: the update check sorts the same few versions on every poll."""
    version = patchfmt.parse_version(text)
    precedence = Version(
        major=version.major,
        minor=version.minor,
        patch=version.patch,
        prerelease=version.prerelease,
    )
    return precedence, text


@functools.lru_cache(maxsize=8192)
def is_prerelease(text: str) -> bool:
    return bool(patchfmt.parse_version(text).prerelease)
