"""Builds the registry's FastAPI application from its settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, func, select

from registry_server import __version__, docs_page, pages
from registry_server.api.routes import (
    blobs,
    health,
    namespaces,
    packages,
    search,
    tokens,
    tuf,
    updates,
)
from registry_server.config import Settings
from registry_server.context import Registry
from registry_server.db import create_registry_engine, session_factory
from registry_server.errors import install_error_handlers
from registry_server.generation import generation_reader_for
from registry_server.metrics import MetricsMiddleware, RegistryMetrics
from registry_server.models import Artifact
from registry_server.page_headers import SecurityHeadersMiddleware
from registry_server.polling import ConditionalIndexMiddleware, etag_lookup_for
from registry_server.request_limits import RequestBodyLimitsMiddleware
from registry_server.response_cache import ResponseCache, ResponseCacheMiddleware
from registry_server.storage import BlobStorage, open_storage

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    storage: BlobStorage | None = None,
) -> FastAPI:
    """The application; `engine` and `storage` default to what `settings` name."""
    settings = settings or Settings()
    engine = engine or create_registry_engine(settings.resolved_database_url)
    storage = storage or open_storage(
        settings.resolved_storage,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
    )
    sessions = session_factory(engine)

    def stored() -> tuple[int, int]:
        with sessions() as session:
            total, count = session.execute(
                select(func.coalesce(func.sum(Artifact.size), 0), func.count(Artifact.id))
            ).one()
        return int(total), int(count)

    metrics = RegistryMetrics(stored)
    etag_lookup = etag_lookup_for(engine)
    generation = generation_reader_for(engine)
    response_cache = ResponseCache(settings.response_cache_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await etag_lookup.aclose()
        await generation.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="ppatch registry",
        version=__version__,
        summary="Publish, index and serve signed safety patches for language models.",
        docs_url=None,  # docs_page serves /docs from the package's own files
        redoc_url=None,
    )
    app.state.registry = Registry(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=storage,
        metrics=metrics,
        etag_lookup=etag_lookup,
        generation=generation,
        response_cache=response_cache,
    )
    install_error_handlers(app)
    for router in (
        packages.router,
        namespaces.router,
        search.router,
        updates.router,
        tokens.router,
        blobs.router,
        tuf.router,
        health.router,
        pages.router,
        docs_page.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # Outermost last: metrics see every request, including the 304s and the cached answers
    # given by the shortcuts, and cached pages get the security headers like fresh ones.
    app.add_middleware(ResponseCacheMiddleware, generation=generation, cache=response_cache)
    app.add_middleware(
        ConditionalIndexMiddleware, lookup=etag_lookup, max_age=settings.index_max_age
    )
    app.add_middleware(
        RequestBodyLimitsMiddleware,
        max_bytes=settings.max_request_bytes,
        body_timeout=settings.body_timeout,
        upload_timeout=settings.upload_timeout,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
