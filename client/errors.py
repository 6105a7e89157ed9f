"""Typed errors of the ppatch client.

Every failure a user can cause or meet carries an exit code from `ExitCode`, so the CLI turns it
into one line and a stable status without knowing the error's details. Errors carry their fields
(`name`, `version`, `fingerprint`, ...) so programs can react without parsing messages.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ConflictError",
    "ExitCode",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "PpatchError",
    "StaleIndexError",
    "UsageError",
    "VerificationError",
]


class ExitCode(IntEnum):
    """Process exit codes; a stable contract (DESIGN.md, docs/cli.md)."""

    OK = 0
    UPDATES_AVAILABLE = 1  # `outdated`: an update exists or an installed version is yanked
    USAGE = 2
    VERIFICATION = 3  # bad file, hash, signature, key pin, or fingerprint mismatch
    NOT_FOUND = 4  # package, version, artifact, model or file not found
    CONFLICT = 5  # immutable version reused, concurrent change, already exists
    NETWORK = 6  # registry unreachable, timed out, or answered 5xx
    PERMISSION = 7  # no token, bad token, or the token lacks the right
    FAILED = 8  # anything else that went wrong and is not a bug
    STALE_INDEX = 9  # the registry's signed index is expired, rolled back or frozen
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class PpatchError(Exception):
    """Base of every error the client raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(PpatchError, ValueError):
    exit_code = ExitCode.USAGE


class VerificationError(PpatchError):
    exit_code = ExitCode.VERIFICATION


class StaleIndexError(VerificationError):
    """The registry's signed index could not be confirmed fresh: expired or rolled back."""

    exit_code = ExitCode.STALE_INDEX


class NotFoundError(PpatchError, LookupError):
    exit_code = ExitCode.NOT_FOUND


class ConflictError(PpatchError):
    exit_code = ExitCode.CONFLICT


class NetworkError(PpatchError, ConnectionError):
    exit_code = ExitCode.NETWORK


class PermissionDeniedError(PpatchError, PermissionError):
    exit_code = ExitCode.PERMISSION
