"""The server's Prometheus metrics, in a registry of its own (one per app, so tests can run
several servers in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServeMetrics"]


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ppatch_serve_requests",
            "Completion requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "ppatch_serve_swaps", "Patch sets swapped in without a restart", registry=self.registry
        )
        self.swap_failures = Counter(
            "ppatch_serve_swap_failures",
            "Installed sets that could not be swapped in (the running set kept serving)",
            registry=self.registry,
        )
        self.upgrade_checks = Counter(
            "ppatch_serve_upgrade_checks",
            "Auto-upgrade checks, by outcome (changed, unchanged, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.generation = Gauge(
            "ppatch_serve_patch_set_generation",
            "How many times the served set has changed since the server started",
            registry=self.registry,
        )
        self.tokens = Counter(
            "ppatch_serve_generated_tokens", "Tokens generated", registry=self.registry
        )
        self.batch_rows = Histogram(
            "ppatch_serve_batch_rows",
            "Rows (choices) per batch the model ran",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def observe_batch(self, rows: int, tokens: int) -> None:
        self.batch_rows.observe(rows)
        self.tokens.inc(tokens)
