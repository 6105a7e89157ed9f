"""The one place registry HTTP responses become client exceptions.

The registry answers errors as `{"error": {"code": ..., "message": ...}}`
(docs/architecture.md); `raise_for_status` maps `code` to a typed exception that carries the
code, the HTTP status and the server's message, so the CLI can print one line and the right
exit code. An answer without that body (a proxy's HTML page, say) is mapped by status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx is imported by whoever has a response; not needed to map one
    import httpx
from ppatch.errors import (
    ConflictError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    PpatchError,
    UsageError,
    VerificationError,
)

__all__ = [
    "ERROR_CLASSES",
    "ForbiddenError",
    "InvalidPatchError",
    "InvalidRequestError",
    "InvalidSignatureError",
    "NameMismatchError",
    "PayloadTooLargeError",
    "RegistryConflictError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryUnavailableError",
    "UnauthorizedError",
    "UnexpectedResponseError",
    "VersionExistsError",
    "error_from_response",
    "raise_for_status",
]


class RegistryError(PpatchError):
    """An error answer from the registry; `code` is the server's error code."""

    def __init__(self, message: str, *, code: str, status: int, url: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.url = url


class UnauthorizedError(RegistryError, PermissionDeniedError):
    pass


class ForbiddenError(RegistryError, PermissionDeniedError):
    pass


class RegistryNotFoundError(RegistryError, NotFoundError):
    pass


class VersionExistsError(RegistryError, ConflictError):
    pass


class RegistryConflictError(RegistryError, ConflictError):
    pass


class PayloadTooLargeError(RegistryError, UsageError):
    pass


class InvalidPatchError(RegistryError, VerificationError):
    pass


class InvalidSignatureError(RegistryError, VerificationError):
    pass


class NameMismatchError(RegistryError, VerificationError):
    pass


class InvalidRequestError(RegistryError, UsageError):
    pass


class RegistryUnavailableError(RegistryError, NetworkError):
    """5xx: the registry or its database or storage is down; worth retrying later."""


ERROR_CLASSES: dict[str, type[RegistryError]] = {
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": RegistryNotFoundError,
    "version_exists": VersionExistsError,
    "conflict": RegistryConflictError,
    "payload_too_large": PayloadTooLargeError,
    "invalid_patch": InvalidPatchError,
    "invalid_signature": InvalidSignatureError,
    "name_mismatch": NameMismatchError,
    "invalid_request": InvalidRequestError,
    "database_unavailable": RegistryUnavailableError,
    "storage_unavailable": RegistryUnavailableError,
    "internal": RegistryUnavailableError,
}

_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
}


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body: Any = response.json()
    except ValueError:
        return None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def error_from_response(response: httpx.Response) -> RegistryError:
    """The exception for an error response (status >= 400)."""
    code, message = _error_body(response)
    status = response.status_code
    if code not in ERROR_CLASSES:
        code = _CODE_BY_STATUS.get(status, "internal" if status >= 500 else "invalid_request")
    try:
        target = f"{response.request.method} {response.request.url}"
        url = str(response.request.url)
    except RuntimeError:  # a response built by hand, with no request attached
        target, url = "the request", ""
    reason = message or response.reason_phrase or "no details"
    text = f"registry refused {target}: {reason} ({status} {code})"
    if code == "unauthorized":
        text += "; check the token ('ppatch login' or PPATCH_TOKEN)"
    return ERROR_CLASSES[code](text, code=code, status=status, url=url)


def raise_for_status(response: httpx.Response) -> None:
    """Raise the mapped exception when `response` is an error; 1xx-3xx pass."""
    if response.status_code >= 400:
        raise error_from_response(response)


class UnexpectedResponseError(RegistryError):
    """A success status with a body that is not the JSON the API promises (a wrong URL?)."""
