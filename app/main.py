"""Assembles the service: settings, metrics, error handlers, routes, and the lifespan that loads
the model, warms it up and reports ready, then drains the queue on shutdown. A model that cannot
be served stops the process (app/failure.py).

`uvicorn app.main:app` serves it; so does `python -m app`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.router import api_router
from app.api.routes import demo
from app.buffers import BufferBudget
from app.errors import install_error_handlers
from app.failure import Failure
from app.inference import Classifier
from app.metrics import Metrics, MetricsMiddleware
from app.model_check import ModelError
from app.session import load_model
from app.settings import Settings, get_settings

log = logging.getLogger("app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and check the model (a failure stops start-up), warm up in the background (a
    failure ends the process), drain at exit."""
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    failure: Failure = app.state.failure
    try:
        model = await asyncio.to_thread(load_model, settings.model_dir, settings)
    except Exception as exc:
        log.error("cannot serve %s: %s", settings.model_dir, exc)
        raise
    metrics.set_model(model.config.name, model.config.version, model.providers)
    classifier = Classifier(model, settings, metrics, on_failure=failure.fail)
    app.state.classifier = classifier
    warm_up = asyncio.create_task(classifier.start(), name="warm-up")
    warm_up.add_done_callback(lambda task: _report_warm_up(task, failure))
    try:
        yield
    finally:
        if not warm_up.done():
            warm_up.cancel()
            await asyncio.gather(warm_up, return_exceptions=True)
        await classifier.stop()
        app.state.classifier = None
        log.info("stopped: every accepted request was answered")


def _report_warm_up(task: asyncio.Task[None], failure: Failure) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        if not isinstance(error, ModelError):  # a model's own error says all; others may not
            log.error("warm-up failed", exc_info=error)
        failure.fail(f"warm-up failed: {error}")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own settings and metrics registry."""
    app = FastAPI(
        title="vitserve",
        summary="Vision Transformer classification with attention maps, on onnxruntime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    app.state.metrics = Metrics()
    app.state.buffers = BufferBudget(app.state.settings.buffered_bytes_limit)
    app.state.classifier = None
    # After a failure, every request in flight has its answer within the request timeout.
    app.state.failure = Failure(grace_s=app.state.settings.request_timeout_s + 5)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    if app.state.settings.demo:
        app.include_router(demo.router)
    return app


app = create_app()
