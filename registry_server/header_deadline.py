"""Uvicorn's httptools protocol with a deadline on request headers.

Uvicorn's keep-alive timer restarts with every byte received, so a client that sends one header
byte every few seconds holds its connection (and a slot) for as long as it likes. This deadline
starts when the connection opens or the previous response ends, and does not restart: the
headers are complete within `header_timeout` seconds or the connection is closed. Serving
processes read `header_timeout` from the same `PPATCH_REGISTRY_*` settings as the app (every
worker of `serve --workers` imports this class by name).
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from registry_server.config import Settings

__all__ = ["HeaderDeadlineProtocol"]


@functools.cache
def _header_timeout() -> float:
    return Settings().header_timeout


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # A pipelined request already received its headers: no deadline while it is answered.
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(_header_timeout(), self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
