"""A standard-library HTTP server run on a thread for the length of a test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

__all__ = ["serving"]


@contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[int]:
    """Serve `httpd` on a thread; yields its port, then shuts it down and closes it."""
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
