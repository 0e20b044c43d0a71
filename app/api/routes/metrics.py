"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.auth import METRICS_API_KEY
from app.api.deps import MetricsDep
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"], dependencies=[METRICS_API_KEY])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """The service's metrics, for Prometheus to scrape."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
