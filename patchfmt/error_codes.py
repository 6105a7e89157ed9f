"""The registry's error codes: what the server sends and the client maps to its exceptions.

An error answer is `{"error": {"code": ..., "message": ...}}` (docs/architecture.md). Both sides
import the codes from here, so a code cannot exist on one side only. `code_for_status` names the
code of an answer that carries none (a proxy's page, a framework's own 404).
"""

from __future__ import annotations

import enum

__all__ = ["DEFAULT_STATUS", "ErrorCode", "code_for_status"]


class ErrorCode(enum.StrEnum):
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VERSION_EXISTS = "version_exists"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_PATCH = "invalid_patch"
    INVALID_SIGNATURE = "invalid_signature"
    NAME_MISMATCH = "name_mismatch"
    INVALID_REQUEST = "invalid_request"
    DATABASE_UNAVAILABLE = "database_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INTERNAL = "internal"


# The usual status of each code; `invalid_request` is 400 or 422 and is given explicitly.
DEFAULT_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.VERSION_EXISTS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INVALID_PATCH: 422,
    ErrorCode.INVALID_SIGNATURE: 422,
    ErrorCode.NAME_MISMATCH: 422,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

_CODE_BY_STATUS = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    503: ErrorCode.DATABASE_UNAVAILABLE,
}


def code_for_status(status: int) -> ErrorCode:
    """The code of an error answer of `status` that names none: other 5xx are `internal`,
    other 4xx `invalid_request`."""
    fallback = ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_REQUEST
    return _CODE_BY_STATUS.get(status, fallback)
