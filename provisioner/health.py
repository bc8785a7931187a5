"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from provisioner.deps import AdminDep, AppStateDep, PrincipalDep
from provisioner.errors import error_responses
from provisioner.schemas import Health

router = APIRouter(tags=["ops"])


# HEAD (uptime checkers often probe with it) is served for every GET by HeadMiddleware.
@router.get("/healthz", summary="Liveness (the only route without auth)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready"}, **error_responses()},
    summary="Readiness: the registry answers and the engine can run",
)
async def readyz(_principal: PrincipalDep, services: AppStateDep) -> JSONResponse:
    checks: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.to_thread(services.database.ping)
        checks["registry"] = {"ok": True, "detail": services.database.engine.dialect.name}
    except SQLAlchemyError as error:
        checks["registry"] = {"ok": False, "detail": type(error).__name__}
    health = await asyncio.to_thread(services.host.health)
    checks["engine"] = {
        "ok": health.available,
        "detail": health.detail,
        "name": services.engine_name,
    }
    ready = all(check["ok"] for check in checks.values())
    body = Health(
        status="ok" if ready else "unavailable", checks=checks, code_version=services.code_version
    )
    return JSONResponse(body.model_dump(by_alias=True), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(403)},
    summary="Prometheus metrics",
)
async def metrics(_principal: AdminDep, services: AppStateDep) -> Response:
    body = await asyncio.to_thread(generate_latest, services.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
