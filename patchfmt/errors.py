"""Typed errors of the format library.

One base, `PatchFormatError`, and specific errors that also subclass the matching built-in (as
`packaging.version.InvalidVersion` subclasses `ValueError`), so callers may catch either. Every
error carries its fields; every message names the file or field, what was found (quoted with
`repr`) and what would be valid.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "FingerprintMismatchError",
    "HashMismatchError",
    "InvalidContainerError",
    "InvalidManifestError",
    "InvalidNameError",
    "InvalidRangeError",
    "InvalidVersionError",
    "InvalidWeightsError",
    "ModelNotFoundError",
    "PatchFormatError",
    "SignatureError",
    "UnsupportedFormatError",
]


class PatchFormatError(Exception):
    """Base of every error this library raises on purpose."""


class InvalidManifestError(PatchFormatError, ValueError):
    """The manifest breaks one or more rules; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str], *, source: str = "manifest.json") -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid {source} ({count} {noun}): " + "; ".join(self.problems))


class InvalidContainerError(PatchFormatError, ValueError):
    """The ZIP structure, an entry name or a size breaks the container rules."""


class InvalidWeightsError(PatchFormatError, ValueError):
    """A safetensors header, tensor name, dtype, shape or value is not acceptable."""


class HashMismatchError(PatchFormatError, ValueError):
    """A file's sha256 differs from the one its manifest declares."""

    def __init__(self, file: str, expected: str, actual: str) -> None:
        self.file = file
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 of {file!r} is {actual!r} but the manifest declares {expected!r}")


class SignatureError(PatchFormatError, ValueError):
    """A signature is missing, malformed, made by an untrusted key, or does not verify."""

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(message)


class UnsupportedFormatError(PatchFormatError, ValueError):
    """The file declares a format version this reader does not understand."""

    def __init__(self, found: object, supported: str) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"manifest.json: format {found!r} is not supported; this reader understands "
            f"{supported!r} (upgrade ppatch to read newer files)"
        )


class FingerprintMismatchError(PatchFormatError, ValueError):
    """The model's fingerprint is neither the manifest's nor one it lists as compatible."""

    def __init__(
        self,
        expected: str,
        actual: str,
        *,
        compatible: Sequence[str] = (),
        base_model_id: str | None = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        self.compatible = list(compatible)
        self.base_model_id = base_model_id
        also = f" (or compatible {', '.join(self.compatible)})" if self.compatible else ""
        # The id is what a person recognises; the hashes are what was compared.
        named = f"{base_model_id!r} " if base_model_id else ""
        super().__init__(
            f"the patch is built for base model {named}{expected}{also} but the model's "
            f"fingerprint is {actual}"
        )


class ModelNotFoundError(PatchFormatError, FileNotFoundError):
    """No usable model at the given path or repo id (nothing is ever downloaded)."""

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        # One argument only: OSError treats two arguments as (errno, strerror).
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidVersionError(PatchFormatError, ValueError):
    """Text that is not a SemVer 2.0 version."""


class InvalidRangeError(PatchFormatError, ValueError):
    """Text that is not an npm-style version range."""


class InvalidNameError(PatchFormatError, ValueError):
    """A package name or spec that breaks the naming rule."""
