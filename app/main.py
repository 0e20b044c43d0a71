"""Assembles the service: settings, metrics, error handlers, routes, and the lifespan that opens
the model repository (a model that cannot be served stops start-up), warms it up in the
background (a failure ends the process, app/failure.py), serves gRPC beside HTTP, and drains
every model on shutdown.

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
from app.metrics import Metrics, MetricsMiddleware
from app.model_check import ModelError
from app.oip.grpc_service import start_grpc_server
from app.repository import ModelRepository
from app.settings import Settings, get_settings

log = logging.getLogger("app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the repository (a failure stops start-up), warm up in the background (a failure
    ends the process), drain at exit."""
    settings: Settings = app.state.settings
    failure: Failure = app.state.failure
    repository = ModelRepository(settings, app.state.metrics, failure)
    try:
        await repository.open()
        grpc_server = await start_grpc_server(repository, settings, app.state.metrics)
    except Exception as exc:
        log.error("cannot serve %s: %s", settings.model_repository or settings.model_dir, exc)
        await repository.close()
        raise
    app.state.repository = repository
    warm_up = asyncio.create_task(repository.warm_up(), name="warm-up")
    warm_up.add_done_callback(lambda task: _report_warm_up(task, failure))
    try:
        yield
    finally:
        if not warm_up.done():
            warm_up.cancel()
            await asyncio.gather(warm_up, return_exceptions=True)
        if grpc_server is not None:  # in-flight calls finish within the request timeout
            await grpc_server.stop(grace=settings.request_timeout_s)
        await repository.close()
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
    app.state.repository = None
    # After a failure, every request in flight has its answer within the request timeout.
    app.state.failure = Failure(grace_s=app.state.settings.request_timeout_s + 5)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    if app.state.settings.demo:
        app.include_router(demo.router)
    return app


app = create_app()
