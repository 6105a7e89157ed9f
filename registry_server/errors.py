"""The registry's error codes, its one exception type, and the handlers that give every error
response the same body: `{"error": {"code": ..., "message": ...}}`.

The codes are a stable contract (docs/architecture.md, docs/registry.md); the client maps each to
a typed exception in one place (`ppatch.registry.errors`).
"""

from __future__ import annotations

import enum
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry_server.storage import BlobNotFoundError, StorageError

__all__ = ["ErrorCode", "RegistryError", "error_body", "install_error_handlers"]

logger = logging.getLogger("registry_server")


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


class RegistryError(Exception):
    """An error answered to the client with `code`, `message` and an HTTP status."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else DEFAULT_STATUS[code]
        self.headers = headers


def error_body(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message}}


def _respond(error: RegistryError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message), status_code=error.status, headers=error.headers
    )


def _code_for_http_status(status: int) -> ErrorCode:
    return {
        401: ErrorCode.UNAUTHORIZED,
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        409: ErrorCode.CONFLICT,
        413: ErrorCode.PAYLOAD_TOO_LARGE,
        503: ErrorCode.DATABASE_UNAVAILABLE,
    }.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_REQUEST)


def _describe_validation(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{location}: {item.get('msg', 'invalid')}" if location else item["msg"])
    return "invalid request: " + "; ".join(problems)


async def _registry_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RegistryError)
    return _respond(error)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        message = "not found"
    elif error.status_code == 405:
        message = "method not allowed on this URL"
    else:
        message = str(error.detail) or HTTPStatus(error.status_code).phrase
    headers = dict(error.headers) if error.headers else None
    return _respond(
        RegistryError(
            _code_for_http_status(error.status_code),
            message,
            status=error.status_code,
            headers=headers,
        )
    )


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _respond(
        RegistryError(ErrorCode.INVALID_REQUEST, _describe_validation(error), status=422)
    )


async def _database_error(_request: Request, error: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", error)
    return _respond(
        RegistryError(
            ErrorCode.DATABASE_UNAVAILABLE,
            "the registry's database is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    )


async def _storage_error(_request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, BlobNotFoundError):
        # The index names a blob the store lacks: the store is broken, not the request.
        logger.error("blob missing from storage: %s", error)
    else:
        logger.warning("storage unavailable: %s", error)
    return _respond(
        RegistryError(
            ErrorCode.STORAGE_UNAVAILABLE,
            "the registry's blob storage is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    )


async def _internal_error(_request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=error)
    return _respond(RegistryError(ErrorCode.INTERNAL, "internal error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(Exception, _internal_error)
