"""Liveness (`/health`), readiness (`/api/v1/health`) and `/api/diagnostics`.

`/health` touches no dependency so a container's HEALTHCHECK and Render's probe see
the process alive even while PostgreSQL or Redis are down; `/api/v1/health` answers
503 naming the dependencies that failed.
"""

from __future__ import annotations

from typing import Dict

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app import __version__
from app.container import Container, get_container
from app.probes import probe_all
from app.schemas import DiagnosticsOut, HealthOut

router = APIRouter()


# HEAD (probes) is served but not in the schema: FastAPI would give GET and HEAD one operationId. GET is
# registered first, so a 405 on /health names GET, the method the schema documents.
@router.head("/health", include_in_schema=False)
@router.get("/health", tags=["health"])
def liveness() -> Dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/health", tags=["health"], response_model=HealthOut, responses={503: {"model": HealthOut}})
def readiness(container: Container = Depends(get_container)) -> JSONResponse:
    results = probe_all(container)
    checks = {name: result.status for name, result in results.items()}
    failing = sorted(name for name, result in results.items() if result.status != "ok")
    if failing:
        body = HealthOut(status="unavailable", checks=checks, failing=failing)
        return JSONResponse(status_code=503, content=body.model_dump())
    return JSONResponse(status_code=200, content=HealthOut(status="ok", checks=checks).model_dump(exclude_none=True))


@router.get("/api/diagnostics", tags=["health"], response_model=DiagnosticsOut)
def diagnostics(container: Container = Depends(get_container)) -> DiagnosticsOut:
    results = probe_all(container)
    degraded = any(result.status != "ok" for result in results.values())
    return DiagnosticsOut(
        service="namaskah-sms-verification",
        version=__version__,
        commit=container.settings.git_commit,
        environment=container.settings.environment,
        uptime_seconds=round(container.uptime_seconds(), 3),
        status="degraded" if degraded else "ok",
        dependencies=results,
    )
