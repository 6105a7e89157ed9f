"""`ModelServer`: one loaded model and everything that serves it, started and stopped together.

It owns the served snapshot (`ServingState`), the batching engine, the installed-set watcher and,
with `auto_upgrade_seconds`, the auto-upgrader. The HTTP layer (`ppatch.serve.app`) only reads
from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppatch.install import ModelTarget
from ppatch.serve.auto_upgrade import AutoUpgrader
from ppatch.serve.engine import BatchingEngine
from ppatch.serve.hot_swap import InstalledSetWatcher, ServingState
from ppatch.serve.metrics import ServeMetrics
from ppatch.serve.served_sets import Snapshot

__all__ = ["ModelServer", "ServeOptions", "load_server"]


@dataclass(frozen=True)
class ServeOptions:
    """How the server batches, watches and upgrades (the CLI's options)."""

    window_seconds: float = 0.005
    max_batch_rows: int = 32
    watch_seconds: float = 0.5
    auto_upgrade_seconds: float | None = None
    registry: str | None = None
    served_name: str | None = None


class ModelServer:
    def __init__(
        self, model: Any, tokenizer: Any, target: ModelTarget, options: ServeOptions
    ) -> None:
        self.metrics = ServeMetrics()
        self.target, self.options = target, options
        self.base_id = options.served_name or target.path.name
        self.state = ServingState(
            model,
            tokenizer,
            base_id=self.base_id,
            fingerprint=target.fingerprint,
            on_swap=self._swapped,
            on_swap_failure=lambda message: self.metrics.swap_failures.inc(),
        )
        self.engine = BatchingEngine(
            window_seconds=options.window_seconds,
            max_batch_rows=options.max_batch_rows,
            on_batch=self.metrics.observe_batch,
        )
        self.watcher = InstalledSetWatcher(
            target.fingerprint, self.state.reload, interval=options.watch_seconds
        )
        self.upgrader: AutoUpgrader | None = None
        if options.auto_upgrade_seconds is not None:
            self.upgrader = AutoUpgrader(
                target,
                options.auto_upgrade_seconds,
                registry=options.registry,
                on_result=lambda outcome: self.metrics.upgrade_checks.labels(outcome).inc(),
                after_change=self.watcher.check,
            )

    @property
    def context_length(self) -> int:
        config = self.state.model.config
        return int(getattr(config, "max_position_embeddings", 0) or 2048)

    def start(self) -> None:
        self.engine.start()
        self.watcher.start()
        if self.upgrader is not None:
            self.upgrader.start()

    def stop(self) -> None:
        if self.upgrader is not None:
            self.upgrader.stop()
        self.watcher.stop()
        self.engine.stop()

    def _swapped(self, snapshot: Snapshot) -> None:
        self.metrics.swaps.inc()
        self.metrics.generation.set(snapshot.generation)


def load_server(
    model: str | os.PathLike[str],
    options: ServeOptions,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> ModelServer:
    """Load `model` (a directory or a cached repo id) once; patch sets are applied per request."""
    from ppatch.install import model_target
    from ppatch.runtime.loading import load_model

    target = model_target(os.fspath(model))
    bare = load_model(Path(target.path), [], device=device, dtype=dtype)
    return ModelServer(bare.model, bare.tokenizer, target, options)
