"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.errors import error_response
from app.schemas import ErrorResponse, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorResponse}})
async def readyz(request: Request) -> Health | JSONResponse:
    """Ready: every model version served is loaded and warmed up (503 before, once the service
    has failed, and while it is stopping)."""
    retry = {"Retry-After": "1"}
    if request.app.state.failure.reason is not None:  # the reason is in the log
        return error_response(503, "failed", "the service has failed and is exiting", retry)
    repository = request.app.state.repository
    if repository is not None and repository.stopping:
        return error_response(503, "stopping", "the service is stopping; use another replica")
    if repository is None or not repository.ready:
        return error_response(503, "not_ready", "the models are loading or warming up", retry)
    return Health(status="ready")
