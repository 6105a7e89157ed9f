"""What one registry process holds: settings, database engine, storage, metrics and caches.

Nothing here is state that matters across processes: the index cache is keyed by the package's
ETag from the database, and the response cache by the registry's generation, read from the
database on every request, so a stale entry is never served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry_server.config import Settings
from registry_server.metrics import RegistryMetrics
from registry_server.storage import BlobStorage

if TYPE_CHECKING:  # polling -> index -> upload imports this module
    from registry_server.generation import GenerationReader
    from registry_server.polling import EtagLookup
    from registry_server.response_cache import ResponseCache

__all__ = ["IndexCache", "Registry"]


class IndexCache:
    """Serialized package indexes keyed by (namespace, name, etag); least recently used out."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: tuple[str, str, str], body: bytes) -> None:
        with self._lock:
            self._entries[key] = body
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


@dataclass
class Registry:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: BlobStorage
    metrics: RegistryMetrics
    etag_lookup: EtagLookup
    generation: GenerationReader
    response_cache: ResponseCache
    index_cache: IndexCache = field(default_factory=IndexCache)
