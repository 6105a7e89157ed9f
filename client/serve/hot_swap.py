"""The served snapshot and how it changes: watch the installed set, rebuild, swap atomically.

`ServingState.current` is the one reference requests read; `reload` builds a whole new
`Snapshot` beside the old one and replaces the reference only when the new one is complete.
Requests that took the old snapshot finish on it; a set that cannot be built (a missing or
damaged patch, an unreadable installed-set file) is logged and counted, and the old snapshot
keeps serving.

`InstalledSetWatcher` polls the model's installed-set file, the file that `ppatch install`,
`upgrade` and `remove` rewrite atomically (by rename) from any process: a change of inode,
modification time, size or content triggers a reload, and a reload that finds the same
patches swaps nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ppatch import store
from ppatch.serve.served_sets import Snapshot, build_snapshot, installed_key

__all__ = ["FileSignature", "InstalledSetWatcher", "ServingState", "file_signature"]

log = logging.getLogger("ppatch.serve")


@dataclass(frozen=True)
class FileSignature:
    inode: int
    mtime_ns: int
    size: int
    sha256: str


def file_signature(path: Any) -> FileSignature | None:
    """How the file is now, or None when there is none (nothing installed yet)."""
    try:
        stat = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return FileSignature(
        stat.st_ino, stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest()
    )


class ServingState:
    """The current snapshot of a loaded model, replaced whole when the installed set changes."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        base_id: str,
        fingerprint: str,
        on_swap: Callable[[Snapshot], None] = lambda snapshot: None,
        on_swap_failure: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.base_id, self.fingerprint = base_id, fingerprint
        self._on_swap, self._on_swap_failure = on_swap, on_swap_failure
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None
        self.current: Snapshot = build_snapshot(
            model, tokenizer, base_id=base_id, state=store.read_installed(fingerprint), generation=0
        )

    def reload(self) -> bool:
        """Rebuild from the installed set if it changed; True when a new snapshot was swapped in.

        Never raises for a bad installed set: the failure is logged, counted and kept in
        `last_error`, and the running snapshot stays.
        """
        with self._reload_lock:
            old = self.current
            try:
                state = store.read_installed(self.fingerprint)
                if installed_key(state) == old.installed:
                    self.last_error = None
                    return False
                new = build_snapshot(
                    self.model,
                    self.tokenizer,
                    base_id=self.base_id,
                    state=state,
                    generation=old.generation + 1,
                )
            except Exception as error:
                message = " ".join(str(error).split()) or type(error).__name__
                if message != self.last_error:
                    log.error("installed set not swapped in, still serving %s: %s",
                              _describe(old), message)  # fmt: skip
                self.last_error = message
                self._on_swap_failure(message)
                return False
            self.current = new  # the swap: one reference assignment
            self.last_error = None
        log.info("swapped patch set: %s -> %s", _describe(old), _describe(new))
        self._on_swap(new)
        return True


def _describe(snapshot: Snapshot) -> str:
    return snapshot.default.header or "no patches"


class InstalledSetWatcher:
    """Polls the installed-set file and calls `on_change` when it is no longer as it was."""

    def __init__(self, fingerprint: str, on_change: Callable[[], object], interval: float = 0.5):
        self.path = store.installed_set_path(fingerprint)
        self.on_change = on_change
        self.interval = interval
        # Unknown at first: the first poll compares the file with the served snapshot, so a
        # change made while the server was loading is not missed.
        self._seen: FileSignature | bool | None = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: True when the file changed (and `on_change` was called)."""
        signature = file_signature(self.path)
        if signature == self._seen:
            return False
        self._seen = signature
        self.on_change()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ppatch-serve-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("watching the installed set failed")
