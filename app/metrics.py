"""Prometheus metrics: one `vitserve_` prefix, durations in seconds, batch sizes in powers of two.

Each app owns its registry, so several apps (tests) never collide.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Literal

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


Protocol = Literal["http", "grpc"]
LoadOutcome = Literal["loaded", "failed"]


class Metrics:
    """The service's metrics, registered in their own registry. Per-model metrics carry `model`
    and `version` labels; their series exist while that version is loaded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        per_model = ["model", "version"]
        self.requests = Counter(
            "vitserve_requests",
            "Requests answered, by route (gRPC: method) and status.",
            ["route", "status", "protocol"],
            registry=r,
        )
        self.request_duration = Histogram(
            "vitserve_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ["route", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.images = Counter("vitserve_images", "Images classified.", per_model, registry=r)
        self.batch_size = Histogram(
            "vitserve_batch_size",
            "Images per session run.",
            per_model,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "vitserve_queue_wait_seconds",
            "Time an image waited in the queue before its batch ran.",
            per_model,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "vitserve_inference_duration_seconds",
            "Time of one session run (one observation per batch).",
            per_model,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.preprocess_duration = Histogram(
            "vitserve_preprocess_duration_seconds",
            "Time to decode and preprocess one image.",
            per_model,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "vitserve_queue_depth", "Images admitted and not yet computing.", per_model, registry=r
        )
        self.queue_capacity = Gauge(
            "vitserve_queue_capacity",
            "Images the queue admits at most (its max_queue), beside vitserve_queue_depth.",
            per_model,
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
            "Each loaded model version and the onnxruntime providers it runs on (always 1).",
            ["name", "version", "providers"],
            registry=r,
        )
        self.model_loads = Counter(
            "vitserve_model_loads",
            "Model version loads (with checks and warm-up), by outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_ready = Gauge(
            "vitserve_model_ready",
            "1 while a loaded model version takes requests, 0 while it loads or drains.",
            per_model,
            registry=r,
        )

    def for_model(self, name: str, version: str, providers: Sequence[str]) -> RuntimeMetrics:
        """The series of one model version (created now, removed by `RuntimeMetrics.remove`)."""
        return RuntimeMetrics(self, name, version, ",".join(providers))

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class RuntimeMetrics:
    """One model version's series; what its batcher and runtime report to."""

    def __init__(self, metrics: Metrics, name: str, version: str, providers: str) -> None:
        self._metrics = metrics
        self._info = (name, version, providers)
        self._labels = (name, version)
        m = metrics
        self.images = m.images.labels(*self._labels)
        self.batch_size = m.batch_size.labels(*self._labels)
        self.queue_wait = m.queue_wait.labels(*self._labels)
        self.inference_duration = m.inference_duration.labels(*self._labels)
        self.preprocess_duration = m.preprocess_duration.labels(*self._labels)
        self._queue_depth = m.queue_depth.labels(*self._labels)
        self._queue_capacity = m.queue_capacity.labels(*self._labels)
        self._ready = m.model_ready.labels(*self._labels)
        m.model_info.labels(*self._info).set(1)

    def batch_run(self, size: int, waits_s: list[float], inference_s: float) -> None:
        self.batch_size.observe(size)
        for wait in waits_s:
            self.queue_wait.observe(wait)
        self.inference_duration.observe(inference_s)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def queue_capacity(self, capacity: int) -> None:
        self._queue_capacity.set(capacity)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def remove(self) -> None:
        """Drop this version's series (it is unloaded)."""
        m = self._metrics
        for family in (
            m.images,
            m.batch_size,
            m.queue_wait,
            m.inference_duration,
            m.preprocess_duration,
            m.queue_depth,
            m.queue_capacity,
            m.model_ready,
        ):
            with contextlib.suppress(KeyError):
                family.remove(*self._labels)
        with contextlib.suppress(KeyError):
            m.model_info.remove(*self._info)


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
            self.metrics.requests.labels(template, str(status), "http").inc()
            elapsed = time.perf_counter() - start
            self.metrics.request_duration.labels(template, "http").observe(elapsed)
