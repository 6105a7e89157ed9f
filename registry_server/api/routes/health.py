"""`/healthz` (the database answers) and `/metrics` (Prometheus text format).

`/metrics` is not for the public: with `metrics_token` set it needs that bearer token; without
one it answers loopback clients only (uvicorn takes the client address from a local proxy's
X-Forwarded-For, so a proxy on the same machine does not make everyone local)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from registry_server.api.deps import RegistryDep
from registry_server.config import Settings
from registry_server.errors import ErrorCode, RegistryError, error_body

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


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_metrics_access(settings: Settings, request: Request) -> None:
    """Raise unless `request` may read the metrics under `settings`."""
    token = settings.metrics_token
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}".encode()
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise RegistryError(
                ErrorCode.UNAUTHORIZED,
                "/metrics needs the metrics token as a bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="ppatch-registry-metrics"'},
            )
    elif not _is_loopback(request.client.host if request.client else None):
        raise RegistryError(
            ErrorCode.FORBIDDEN,
            "/metrics answers loopback clients only; set PPATCH_REGISTRY_METRICS_TOKEN "
            "to scrape it from elsewhere",
        )


@router.get("/metrics", summary="Prometheus metrics (metrics token or loopback only)")
def metrics(registry: RegistryDep, request: Request) -> Response:
    check_metrics_access(registry.settings, request)
    return Response(registry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
