"""Security headers: `nosniff` on every answer; on every HTML page a strict Content-Security-
Policy (scripts, styles and images from this registry only, no inline script, no framing),
X-Frame-Options DENY and Referrer-Policy no-referrer.

The API docs page gets the same policy except that styles may be inline: Swagger UI sets style
attributes from its own (vendored, same-origin) script."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DOCS_PATH", "PAGE_CSP", "SecurityHeadersMiddleware"]

DOCS_PATH = "/docs"

_POLICY = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
PAGE_CSP = "; ".join(f"{name} {value}" for name, value in _POLICY.items())
DOCS_CSP = "; ".join(
    f"{name} {value} 'unsafe-inline'" if name == "style-src" else f"{name} {value}"
    for name, value in _POLICY.items()
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_CSP if scope["path"] == DOCS_PATH else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Content-Security-Policy"] = policy
                    headers["X-Frame-Options"] = "DENY"
                    headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)
