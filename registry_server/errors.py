"""The registry's error codes, its one exception type, and the handlers that give every error
response the same body: `{"error": {"code": ..., "message": ...}}`.

The codes are a stable contract (docs/architecture.md, docs/registry.md); the client maps each to
a typed exception in one place (`ppatch.registry.errors`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from patchfmt.error_codes import DEFAULT_STATUS, ErrorCode, code_for_status
from registry_server.storage import BlobNotFoundError, StorageError

__all__ = ["ErrorCode", "RegistryError", "error_body", "install_error_handlers"]

logger = logging.getLogger("registry_server")


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
            code_for_status(error.status_code),
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
