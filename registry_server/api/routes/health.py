"""`/healthz` (the database answers) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from registry_server.api.deps import RegistryDep
from registry_server.errors import ErrorCode, error_body

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(registry: RegistryDep) -> JSONResponse:
    try:
        with registry.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse(
            error_body(ErrorCode.DATABASE_UNAVAILABLE, "the database does not answer"),
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics")
def metrics(registry: RegistryDep) -> Response:
    return Response(registry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
