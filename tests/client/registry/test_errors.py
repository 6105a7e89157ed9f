"""Every registry error code maps to one typed exception with the right exit code."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from patchfmt.error_codes import ErrorCode
from ppatch.errors import ExitCode
from ppatch.registry.errors import (
    ERROR_CLASSES,
    ForbiddenError,
    InvalidPatchError,
    InvalidRequestError,
    InvalidSignatureError,
    NameMismatchError,
    PayloadTooLargeError,
    RegistryConflictError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
    UnauthorizedError,
    VersionExistsError,
    error_from_response,
    raise_for_status,
)

REQUEST = httpx.Request("GET", "http://registry.test/api/v1/packages/acme/toxicity")


def answer(status: int, body: object = None, *, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, request=REQUEST)
    return httpx.Response(status, json=body, request=REQUEST)


def error_body(code: str, message: str = "it went wrong") -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("code", "status", "cls", "exit_code"),
    [
        ("unauthorized", 401, UnauthorizedError, ExitCode.PERMISSION),
        ("forbidden", 403, ForbiddenError, ExitCode.PERMISSION),
        ("not_found", 404, RegistryNotFoundError, ExitCode.NOT_FOUND),
        ("version_exists", 409, VersionExistsError, ExitCode.CONFLICT),
        ("conflict", 409, RegistryConflictError, ExitCode.CONFLICT),
        ("payload_too_large", 413, PayloadTooLargeError, ExitCode.USAGE),
        ("invalid_patch", 422, InvalidPatchError, ExitCode.VERIFICATION),
        ("invalid_signature", 422, InvalidSignatureError, ExitCode.VERIFICATION),
        ("name_mismatch", 422, NameMismatchError, ExitCode.VERIFICATION),
        ("invalid_request", 400, InvalidRequestError, ExitCode.USAGE),
        ("database_unavailable", 503, RegistryUnavailableError, ExitCode.NETWORK),
        ("storage_unavailable", 503, RegistryUnavailableError, ExitCode.NETWORK),
        ("internal", 500, RegistryUnavailableError, ExitCode.NETWORK),
    ],
)
def test_each_code_maps_to_its_exception(
    code: str, status: int, cls: type[RegistryError], exit_code: ExitCode
) -> None:
    error = error_from_response(answer(status, error_body(code, "the server's words")))
    assert type(error) is cls
    assert error.exit_code == exit_code
    assert (error.code, error.status) == (code, status)
    assert error.url == str(REQUEST.url)
    assert "the server's words" in str(error)
    assert "\n" not in str(error)


def test_every_code_is_mapped_and_documented() -> None:
    assert set(ERROR_CLASSES) == set(ErrorCode)
    architecture = (Path(__file__).parents[3] / "docs" / "architecture.md").read_text()
    assert [code for code in ErrorCode if f"`{code}`" not in architecture] == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, UnauthorizedError),
        (404, RegistryNotFoundError),
        (409, RegistryConflictError),
        (502, RegistryUnavailableError),
        (418, InvalidRequestError),
    ],
)
def test_answers_without_an_error_body_map_by_status(status: int, cls: type[RegistryError]) -> None:
    error = error_from_response(answer(status, text="<html>proxy page</html>"))
    assert type(error) is cls


def test_unknown_code_falls_back_to_status() -> None:
    error = error_from_response(answer(404, error_body("brand_new_code")))
    assert type(error) is RegistryNotFoundError


def test_unauthorized_message_says_how_to_fix_the_token() -> None:
    error = error_from_response(answer(401, error_body("unauthorized", "bad token")))
    assert "ppatch login" in str(error)


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_success_and_not_modified_pass(status: int) -> None:
    raise_for_status(httpx.Response(status, request=REQUEST))
