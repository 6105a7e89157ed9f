"""Bounds on what a client sends: the request body's declared size and its time (an ASGI
middleware), and the time of the request's headers (a uvicorn protocol), so a client can neither
make the server read a huge body nor hold a connection open by trickling bytes.

Uploads are the exception: their route streams the body to a file under `max_upload_bytes`
(registry_server.upload), and they get `upload_timeout`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry_server.errors import ErrorCode, error_body

__all__ = [
    "UPLOAD_PATH",
    "BodyTimeoutError",
    "BodyTooLargeError",
    "RequestBodyLimitsMiddleware",
    "server_protocol",
]

logger = logging.getLogger("registry_server")

# The one route whose body may be large and slow: an authenticated upload.
UPLOAD_PATH = re.compile(r"^/api/v1/packages/[^/]+/[^/]+/releases/?$")


class BodyTooLargeError(HTTPException):
    """The body grew past the limit while it streamed: 413, and the connection is closed."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"the request body is over the limit of {limit} bytes",
            headers={"Connection": "close"},
        )


class BodyTimeoutError(HTTPException):
    """The client did not finish sending its body in time: 408, and the connection is closed
    (its unread rest would otherwise be parsed as the next request)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"the request body did not arrive within {seconds:g} seconds",
            headers={"Connection": "close"},
        )


class RequestBodyLimitsMiddleware:
    """A body declared longer than `max_bytes` is refused (413) before a byte of it is read, and
    one without a declared length as soon as it grows past `max_bytes`; every body must arrive
    within `body_timeout` seconds of the app's first read. An upload is
    bounded by its route instead (`max_upload_bytes`, streamed) and `upload_timeout`. An
    HTTPException raised from `receive` reaches the registry's error handler, so the answer
    has the registry's JSON error shape."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, body_timeout: float, upload_timeout: float
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.upload_timeout = upload_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and UPLOAD_PATH.match(scope["path"]) is not None
        declared = _declared_length(scope)
        if not upload and declared is not None and declared > self.max_bytes:
            await _too_large(declared, self.max_bytes)(scope, receive, send)
            return
        seconds = self.upload_timeout if upload else self.body_timeout
        limit = None if upload else self.max_bytes
        await self.app(scope, _bounded_receive(receive, seconds, limit), send)


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # uvicorn refuses a malformed Content-Length before the app sees it


def _too_large(declared: int, limit: int) -> JSONResponse:
    message = f"the request body is {declared} bytes; the limit is {limit}"
    # Closed after answering: the unread body would otherwise be parsed as the next request.
    return JSONResponse(
        error_body(ErrorCode.PAYLOAD_TOO_LARGE, message),
        status_code=413,
        headers={"Connection": "close"},
    )


def _bounded_receive(receive: Receive, seconds: float, limit: int | None) -> Receive:
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    body_done = False
    received = 0

    async def receive_in_time() -> Message:
        nonlocal deadline, body_done, received
        if body_done:  # later reads only wait for a disconnect: no deadline on those
            return await receive()
        if deadline is None:
            deadline = loop.time() + seconds
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except TimeoutError:
            raise BodyTimeoutError(seconds) from None
        received += len(message.get("body", b""))
        if limit is not None and received > limit:
            raise BodyTooLargeError(limit)
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return receive_in_time


def server_protocol() -> type[asyncio.Protocol] | str:
    """The uvicorn HTTP protocol to serve with: `header_deadline.HeaderDeadlineProtocol`
    (uvicorn's httptools protocol with a header deadline). Without httptools (it comes with
    `uvicorn[standard]`), uvicorn's default protocol and a warning: the reverse proxy must then
    bound header time (docs/registry.md)."""
    if importlib.util.find_spec("httptools") is None:
        logger.warning("httptools is not installed: no header timeout; rely on the proxy's")
        return "auto"
    from registry_server.header_deadline import HeaderDeadlineProtocol

    return HeaderDeadlineProtocol
