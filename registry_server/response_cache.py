"""Cached answers to the anonymous reads that anyone can repeat at will: `GET /api/v1/search`,
the package list `/` and the package pages `/p/{ns}/{name}`.

Each answer is a function of the request's path and query string and of the database alone (no
header, cookie or clock goes into it), so the answer the route gave is kept, keyed by those,
together with the registry's generation read *before* the route ran (registry_server.
generation). A later request reads the generation again (one indexed row) and gets the kept
bytes only when it is the same, that is when no change has committed since the kept answer's
data was read; otherwise the route answers and its answer replaces the old ones. A publish,
yank or key change on any server process is therefore visible to the next request on every
process, with no time-to-live.

A hit is answered here, before the router: the framework's routing, dependencies, worker
thread and database session cost several times the lookup. Only complete 200 answers of those
three routes are kept; errors and anything else go through untouched, and so does every request
when the generation cannot be read (the route then answers as usual, 503 included).

Memory is bounded by `response_cache_bytes` per process, least recently used out; an answer
larger than an eighth of that is never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry_server.generation import GenerationReader

__all__ = ["CACHED_ROUTES", "CachedAnswer", "ResponseCache", "ResponseCacheMiddleware"]

CACHED_ROUTES = frozenset({"/api/v1/search", "/", "/p/{ns}/{name}"})
_ENTRY_OVERHEAD = 256  # bytes of bookkeeping counted per entry, besides its key and answer

_Key = tuple[str, bytes]  # the path and the raw query string


@dataclass(frozen=True)
class CachedAnswer:
    route: str  # the route template, for the metrics
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def size(self, key: _Key) -> int:
        headers = sum(len(name) + len(value) for name, value in self.headers)
        return len(key[0]) + len(key[1]) + headers + len(self.body) + _ENTRY_OVERHEAD


class ResponseCache:
    """The answers of one generation, at most `capacity` bytes of them; least recently used
    out. Meeting another generation empties it: generations are random values, never reused,
    so an answer is only ever served for the generation its data was read at."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.largest = capacity // 8
        self._generation: str | None = None
        self._entries: OrderedDict[_Key, CachedAnswer] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held, as counted against the capacity."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def _adopt(self, generation: str) -> None:
        if generation != self._generation:
            self._generation = generation
            self._entries.clear()
            self._size = 0

    def get(self, generation: str, key: _Key) -> CachedAnswer | None:
        with self._lock:
            self._adopt(generation)
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, generation: str, key: _Key, answer: CachedAnswer) -> None:
        size = answer.size(key)
        with self._lock:
            # Read at an older generation than the cache has met since: already out of date.
            if generation != self._generation or size > self.largest:
                return
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= previous.size(key)
            self._entries[key] = answer
            self._size += size
            while self._size > self.capacity:
                old_key, old = self._entries.popitem(last=False)
                self._size -= old.size(old_key)


def _may_be_cached(path: str) -> bool:
    # A cheap test before reading the generation; what is kept is decided by the route.
    return path in ("/", "/api/v1/search") or path.startswith("/p/")


class ResponseCacheMiddleware:
    def __init__(self, app: ASGIApp, generation: GenerationReader, cache: ResponseCache) -> None:
        self.app = app
        self.generation = generation
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not self.cache.capacity
            or not _may_be_cached(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        try:
            generation = await self.generation.current()
        except OperationalError:
            generation = None  # the route answers (503 when the database is really down)
        if generation is None:
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope["query_string"])
        answer = self.cache.get(generation, key)
        if answer is not None:
            scope["ppatch.route"] = answer.route  # for the metrics
            await send(
                {"type": "http.response.start", "status": 200, "headers": list(answer.headers)}
            )
            await send({"type": "http.response.body", "body": answer.body})
            return
        await self._answer_and_keep(scope, receive, send, generation, key)

    async def _answer_and_keep(
        self, scope: Scope, receive: Receive, send: Send, generation: str, key: _Key
    ) -> None:
        headers: tuple[tuple[bytes, bytes], ...] | None = None
        chunks: list[bytes] = []
        complete = False

        async def send_and_keep(message: Message) -> None:
            nonlocal headers, chunks, complete
            if message["type"] == "http.response.start" and message["status"] == 200:
                # Copied now: outer middlewares add their headers to this same list.
                headers = tuple((name, value) for name, value in message["headers"])
            elif message["type"] == "http.response.body" and headers is not None:
                chunks.append(message.get("body", b""))
                complete = not message.get("more_body", False)
                if sum(map(len, chunks)) > self.cache.largest:
                    headers, chunks = None, []  # too large to keep: stop copying it
            await send(message)

        await self.app(scope, receive, send_and_keep)
        template = getattr(scope.get("route"), "path", None)
        if headers is not None and complete and template in CACHED_ROUTES:
            answer = CachedAnswer(route=template, headers=headers, body=b"".join(chunks))
            self.cache.put(generation, key, answer)
