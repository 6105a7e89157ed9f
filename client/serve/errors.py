"""Errors the server answers in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Every refusal a client can cause is an `OpenAIError` carrying its HTTP status, so a route raises
it and one exception handler (`ppatch.serve.app`) writes the body. Anything else that escapes is
answered as a 500 `server_error` with a one-line message, never a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ContextTooLongError",
    "InvalidParameterError",
    "OpenAIError",
    "UnknownModelError",
    "error_body",
]


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class OpenAIError(Exception):
    """A refusal with the status and fields OpenAI's API would send."""

    status_code = 400
    kind = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


class InvalidParameterError(OpenAIError):
    """A parameter's value is out of range, malformed, or something this server cannot do."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message, param=param, code="invalid_value")


class UnknownModelError(OpenAIError):
    status_code = 404

    def __init__(self, model: str, known: list[str]):
        listing = ", ".join(repr(name) for name in known)
        super().__init__(
            f"The model {model!r} does not exist on this server; GET /v1/models lists the "
            f"ones it serves: {listing}",
            param="model",
            code="model_not_found",
        )


class ContextTooLongError(OpenAIError):
    def __init__(self, prompt: int, virtual: int, wanted: int, limit: int, *, param: str):
        super().__init__(
            f"This model's maximum context length is {limit} tokens, but {prompt} prompt "
            f"tokens, {virtual} virtual tokens of the patches and {wanted} tokens to generate "
            f"need {prompt + virtual + wanted}; shorten the prompt or lower max_tokens",
            param=param,
            code="context_length_exceeded",
        )
