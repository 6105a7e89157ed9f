"""The one place registry HTTP responses become client exceptions.

The registry answers errors as `{"error": {"code": ..., "message": ...}}`
(docs/architecture.md); `raise_for_status` maps `code` to a typed exception that carries the
code, the HTTP status and the server's message, so the CLI can print one line and the right
exit code. An answer without that body (a proxy's HTML page, say) is mapped by status.

Both transports use it: httpx responses through `raise_for_status` and `json_object`, the
standard-library update check (`ppatch.registry.json_transport`) through `registry_error` and
`parse_json_object`, which take the status and body bytes. A registry that cannot be reached,
or that `PPATCH_OFFLINE` forbids contacting, is a `NetworkError` built here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from patchfmt.error_codes import ErrorCode, code_for_status
from ppatch import constants

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
    "AnswerTooLargeError",
    "DownloadTooLargeError",
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
    "json_object",
    "parse_json_object",
    "raise_for_status",
    "refuse_offline",
    "registry_error",
    "unreachable",
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


# One class per code of `patchfmt.error_codes`; tests check that no code is left out.
ERROR_CLASSES: dict[str, type[RegistryError]] = {
    ErrorCode.UNAUTHORIZED: UnauthorizedError,
    ErrorCode.FORBIDDEN: ForbiddenError,
    ErrorCode.NOT_FOUND: RegistryNotFoundError,
    ErrorCode.VERSION_EXISTS: VersionExistsError,
    ErrorCode.CONFLICT: RegistryConflictError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.INVALID_PATCH: InvalidPatchError,
    ErrorCode.INVALID_SIGNATURE: InvalidSignatureError,
    ErrorCode.NAME_MISMATCH: NameMismatchError,
    ErrorCode.INVALID_REQUEST: InvalidRequestError,
    ErrorCode.DATABASE_UNAVAILABLE: RegistryUnavailableError,
    ErrorCode.STORAGE_UNAVAILABLE: RegistryUnavailableError,
    ErrorCode.INTERNAL: RegistryUnavailableError,
}


def _error_body(content: bytes) -> tuple[str | None, str | None]:
    try:
        body: Any = json.loads(content)
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


def registry_error(
    status: int, content: bytes, *, reason: str, target: str, url: str
) -> RegistryError:
    """The exception for an error answer (status >= 400) to `target` ("POST https://...").

    `reason` is the status line's phrase, shown when the body carries no message.
    """
    code, message = _error_body(content)
    if code not in ERROR_CLASSES:
        code = str(code_for_status(status))
    reason = message or reason or "no details"
    text = f"registry refused {target}: {reason} ({status} {code})"
    if code == "unauthorized":
        text += "; check the token ('ppatch login' or PPATCH_TOKEN)"
    return ERROR_CLASSES[code](text, code=code, status=status, url=url)


def error_from_response(response: httpx.Response) -> RegistryError:
    """The exception for an httpx error response (status >= 400)."""
    try:
        target = f"{response.request.method} {response.request.url}"
        url = str(response.request.url)
    except RuntimeError:  # a response built by hand, with no request attached
        target, url = "the request", ""
    return registry_error(
        response.status_code,
        response.content,
        reason=response.reason_phrase,
        target=target,
        url=url,
    )


def raise_for_status(response: httpx.Response) -> None:
    """Raise the mapped exception when `response` is an error; 1xx-3xx pass."""
    if response.status_code >= 400:
        raise error_from_response(response)


class UnexpectedResponseError(RegistryError):
    """A success status with a body that is not the JSON the API promises (a wrong URL?)."""


class AnswerTooLargeError(VerificationError):
    """An API answer longer than any real one (`constants.MAX_ANSWER_BYTES`): endless data."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"{url} answered more than {limit} bytes; refusing to read on")


class DownloadTooLargeError(VerificationError):
    """A blob answer longer than the length the index gives for it: endless data."""

    def __init__(self, url: str, limit: int, declared: int | None = None) -> None:
        told = f" (it declared {declared})" if declared is not None else ""
        super().__init__(
            f"{url} sent more than the {limit} bytes the index gives for it{told}; download stopped"
        )


def parse_json_object(content: bytes, *, status: int, url: str, registry: str) -> dict[str, Any]:
    """The JSON object a successful API answer carries, or `UnexpectedResponseError`."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UnexpectedResponseError(
            f"{url} did not answer a JSON object: is {registry!r} a ppatch registry?",
            code="unexpected_response",
            status=status,
            url=url,
        )
    return body


def json_object(response: httpx.Response, registry: str) -> dict[str, Any]:
    """`parse_json_object` of an httpx response."""
    url = str(response.request.url)
    return parse_json_object(
        response.content, status=response.status_code, url=url, registry=registry
    )


def unreachable(registry: str, detail: str) -> NetworkError:
    """No answer at all from `registry` (refused, timed out, reset) after the retries."""
    return NetworkError(f"cannot reach the registry at {registry!r}: {detail}")


def refuse_offline(registry: str, what: str) -> None:
    """Raise `NetworkError` when `PPATCH_OFFLINE` is set: nothing may contact `registry`."""
    if constants.offline():
        raise NetworkError(f"PPATCH_OFFLINE is set: not contacting {registry!r} for {what}")
