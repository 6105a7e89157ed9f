"""Prometheus metrics of one registry process, in a registry of their own (so several apps in
one process, as in the tests, do not collide). Bytes stored is read from the database at scrape
time, so every process reports the same figure."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MetricsMiddleware", "RegistryMetrics"]


class RegistryMetrics:
    def __init__(self, stored: Callable[[], tuple[int, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ppatch_registry_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ppatch_registry_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.uploads = Counter(
            "ppatch_registry_uploads",
            "Upload attempts by outcome (created, unchanged, or the error code)",
            ["outcome"],
            registry=self.registry,
        )
        self._stored = stored
        bytes_stored = Gauge(
            "ppatch_registry_bytes_stored",
            "Bytes of .ppatch blobs the index refers to",
            registry=self.registry,
        )
        bytes_stored.set_function(lambda: float(self._stored()[0]))
        artifacts = Gauge(
            "ppatch_registry_artifacts", "Artifacts in the index", registry=self.registry
        )
        artifacts.set_function(lambda: float(self._stored()[1]))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never by raw path, whose
    cardinality a client controls). A plain ASGI middleware: cheap on the hot path."""

    def __init__(self, app: ASGIApp, metrics: RegistryMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = scope.get("ppatch.route") or getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
