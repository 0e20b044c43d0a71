"""The Open Inference Protocol over REST (KServe V2 as Triton implements it): health, server and
model metadata, readiness, inference (with the binary tensor data and classification
extensions), and the model repository extension. Errors are the protocol's `{"error": "..."}`.

API keys (VITSERVE_API_KEYS) guard every route but the health probes and the server metadata.
A thin adapter: the body is decoded by app/oip/rest_codec.py, the inference is the shared
core's (app/oip/inference.py); the limits, deadline and metrics of /classify apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.api.auth import API_KEY
from app.api.deps import BuffersDep, RepositoryDep, SettingsDep
from app.api.guard import within_deadline
from app.errors import ApiError, NotReady
from app.metrics import Metrics
from app.oip.inference import infer
from app.oip.metadata import model_metadata, server_metadata
from app.oip.rest_codec import HEADER_LENGTH, decode_request, encode_response
from app.repository import ModelRepository
from app.uploads import UploadLimits, read_body


class ProtocolRoute(APIRoute):
    """Renders our errors in the protocol's shape: `{"error": message}`, same status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                metrics: Metrics | None = getattr(request.app.state, "metrics", None)
                if metrics is not None and exc.reason is not None:
                    metrics.rejected.labels(exc.reason).inc()
                return JSONResponse(
                    {"error": exc.message}, status_code=exc.status, headers=exc.headers
                )

        return route


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=ProtocolRoute)

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _open(request: Request) -> ModelRepository | None:
    return request.app.state.repository


@router.get("")
async def server_meta() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return server_metadata()


@router.get("/health/live")
async def live() -> Response:
    """200 while the process answers."""
    return Response()


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    """200 when every model version served is ready, 503 before and while stopping."""
    repository = _open(request)
    if repository is not None and repository.stopping:
        raise NotReady("the service is stopping; use another replica")
    if repository is None or not repository.ready:
        raise NotReady("the models are loading or warming up")
    return Response()


@router.get("/models/{name}", dependencies=[API_KEY])
@router.get("/models/{name}/versions/{version}", dependencies=[API_KEY])
async def model_meta(repository: RepositoryDep, name: str, version: str | None = None) -> Any:
    """A model's versions, inputs (`image` or `pixel_values`) and outputs."""
    runtime = repository.runtime(name, version)
    versions = [r.version for r in repository.served().get(name, [])]
    return model_metadata(runtime, versions)


@router.get("/models/{name}/ready", dependencies=[API_KEY])
@router.get("/models/{name}/versions/{version}/ready", dependencies=[API_KEY])
async def model_ready(repository: RepositoryDep, name: str, version: str | None = None) -> Any:
    """200 when the version (default: the newest served) takes requests, 503 before."""
    runtime = repository.runtime(name, version)
    if not runtime.ready:
        raise NotReady(f"model {name!r} version {runtime.version} is not ready")
    return Response()


@router.post("/models/{name}/infer", openapi_extra=INFER_BODY, dependencies=[API_KEY])
@router.post(
    "/models/{name}/versions/{version}/infer", openapi_extra=INFER_BODY, dependencies=[API_KEY]
)
async def model_infer(
    request: Request,
    repository: RepositoryDep,
    settings: SettingsDep,
    buffers: BuffersDep,
    name: str,
    version: str | None = None,
) -> Response:
    """Inference: JSON tensors, or a JSON header followed by binary tensor data."""
    repository.runtime(name, version)  # 404 before the body is read
    with buffers.permit() as permit:  # the request's bytes count until it is answered
        body = await read_body(request, UploadLimits.from_settings(settings), permit)
        deadline = time.perf_counter() + settings.request_timeout_s
        header_length = request.headers.get(HEADER_LENGTH)
        infer_request, binary = decode_request(body, header_length, name, version)
        answer = await within_deadline(request, infer(repository, infer_request), deadline)
    content, headers = encode_response(answer, binary)
    return Response(content, headers=headers)


@router.post("/repository/index", dependencies=[API_KEY])
async def repository_index(repository: RepositoryDep) -> Any:
    """Every model version on disk or loaded, with its state (READY, LOADING, UNLOADING,
    UNAVAILABLE) and why."""
    return [
        {"name": row.name, "version": row.version, "state": row.state, "reason": row.reason}
        for row in repository.index()
    ]


@router.post("/repository/models/{name}/load", dependencies=[API_KEY])
async def repository_load(repository: RepositoryDep, name: str) -> Response:
    """Load (or reload) a model (explicit mode; 400 in poll mode). Any body is accepted."""
    await repository.load(name)
    return Response()


@router.post("/repository/models/{name}/unload", dependencies=[API_KEY])
async def repository_unload(repository: RepositoryDep, name: str) -> Response:
    """Stop serving a model: it drains, then unloads (explicit mode; 400 in poll mode)."""
    await repository.unload(name)
    return Response()
