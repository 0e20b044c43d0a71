"""Prometheus metrics: one `vitserve_` prefix, durations in seconds, batch sizes in powers of two.

Each app owns its registry, so several apps (tests) never collide.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # no `_created` series: plainer output, same information

# 0.5 ms .. ~33 s, doubling.
DURATION_BUCKETS = tuple(0.0005 * 2**i for i in range(17))
# 1, 2, 4 .. 1024 images.
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))

# The classic text format, which every Prometheus 2.x and promtool read.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """The service's metrics, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vitserve_requests", "HTTP requests answered.", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "vitserve_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.images = Counter("vitserve_images", "Images classified.", registry=r)
        self.batch_size = Histogram(
            "vitserve_batch_size", "Images per session run.", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "vitserve_queue_wait_seconds",
            "Time an image waited in the queue before its batch ran.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "vitserve_inference_duration_seconds",
            "Time of one session run (one observation per batch).",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.preprocess_duration = Histogram(
            "vitserve_preprocess_duration_seconds",
            "Time to decode and preprocess one image.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "vitserve_queue_depth", "Images admitted and not yet computing.", registry=r
        )
        self.queue_capacity = Gauge(
            "vitserve_queue_capacity",
            "Images the queue admits at most (VITSERVE_MAX_QUEUE).",
            registry=r,
        )
        self.model_ready = Gauge(
            "vitserve_model_ready",
            "1 while the model version is loaded, warmed up and taking requests; 0 otherwise.",
            ["model", "version"],
            registry=r,
        )
        self.rejected = Counter(
            "vitserve_rejected",
            "Requests or images refused or dropped, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "timeout", "client_gone", "invalid", "unauthorized"):
            self.rejected.labels(reason)
        self.model_info = Gauge(
            "vitserve_model_info",
            "The model served and the onnxruntime providers it runs on (always 1).",
            ["name", "version", "providers"],
            registry=r,
        )

    def set_model(self, name: str, version: str, providers: Sequence[str]) -> None:
        """The model loaded (not ready until `set_ready`)."""
        self.model_info.clear()
        self.model_info.labels(name, version, ",".join(providers)).set(1)
        self.model_ready.clear()
        self.model_ready.labels(name, version).set(0)

    def set_ready(self, name: str, version: str, ready: bool) -> None:
        self.model_ready.labels(name, version).set(1 if ready else 0)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every request by its route template; adds `x-total-time`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"x-total-time", f"{elapsed_ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(status)).inc()
            self.metrics.request_duration.labels(template).observe(time.perf_counter() - start)
