"""Time bounds on what a client sends: the request body (an ASGI middleware) and the request's
headers (a uvicorn protocol), so a client that trickles bytes cannot hold a connection open.

The body's size is bounded by FastAPI's own `max_body_size` (main.py); this module bounds time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "UPLOAD_PATH",
    "BodyDeadlineMiddleware",
    "BodyTimeoutError",
    "server_protocol",
]

logger = logging.getLogger("registry_server")

# The one route whose body may be large and slow: an authenticated upload.
UPLOAD_PATH = re.compile(r"^/api/v1/packages/[^/]+/[^/]+/releases/?$")


class BodyTimeoutError(HTTPException):
    """The client did not finish sending its body in time: 408, and the connection is closed
    (its unread rest would otherwise be parsed as the next request)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"the request body did not arrive within {seconds:g} seconds",
            headers={"Connection": "close"},
        )


class BodyDeadlineMiddleware:
    """Every request's body must arrive within `body_timeout` seconds of the app's first read
    (`upload_timeout` for an upload). An HTTPException raised from `receive` reaches the
    registry's error handler, so the answer has the registry's JSON error shape."""

    def __init__(self, app: ASGIApp, *, body_timeout: float, upload_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.upload_timeout = upload_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and UPLOAD_PATH.match(scope["path"]) is not None
        seconds = self.upload_timeout if upload else self.body_timeout
        await self.app(scope, _deadline_receive(receive, seconds), send)


def _deadline_receive(receive: Receive, seconds: float) -> Receive:
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    body_done = False

    async def receive_in_time() -> Message:
        nonlocal deadline, body_done
        if body_done:  # later reads only wait for a disconnect: no deadline on those
            return await receive()
        if deadline is None:
            deadline = loop.time() + seconds
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except TimeoutError:
            raise BodyTimeoutError(seconds) from None
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
