"""POST /classify (the default model) and /v1/models/{name}[/versions/{version}]/classify:
images in, top-k labels and attention maps out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.auth import API_KEY
from app.api.deps import BuffersDep, RepositoryDep, SettingsDep
from app.api.guard import within_deadline
from app.buffers import BufferBudget
from app.heatmap import heatmap_png
from app.postprocess import scale_attention, softmax, top_k
from app.preprocess import Box, scale_box
from app.repository import ModelRepository
from app.runtime import Inference, ModelRuntime, Seen
from app.schemas import (
    AttentionGrid,
    AttentionPng,
    ClassifyResponse,
    ErrorResponse,
    ImageResult,
    ModelRef,
    Prediction,
)
from app.settings import Settings
from app.uploads import UploadLimits, read_images

router = APIRouter(tags=["classify"], dependencies=[API_KEY])

AttentionMode = Annotated[Literal["grid", "png", "none"], Query(description="attention map format")]
TopK = Annotated[int, Query(ge=1, description="predictions per image")]

_IMAGE_BODY = {"type": "string", "format": "binary"}
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": _IMAGE_BODY}},
                    "required": ["file"],
                }
            },
            "image/*": {"schema": _IMAGE_BODY},
            "application/octet-stream": {"schema": _IMAGE_BODY},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty_image, invalid_image",
        401: "unauthorized (API keys are set, and none was sent or it is not one of them)",
        404: "model_not_found",
        408: "request_timeout (the body arrived too slowly)",
        413: "payload_too_large, image_too_large",
        415: "unsupported_media_type",
        422: "invalid_parameter",
        503: "overloaded (with Retry-After), not_ready",
        504: "timeout",
    }.items()
}
ROUTE: dict[str, Any] = dict(
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
)


@dataclass(frozen=True)
class Options:
    """What a classify request asks for besides its images."""

    top_k: int
    attention: str


def options(top_k: TopK = 5, attention: AttentionMode = "grid") -> Options:
    return Options(top_k, attention)


OptionsDep = Annotated[Options, Depends(options)]


@router.post("/classify", **ROUTE)
async def classify(
    request: Request,
    response: Response,
    repository: RepositoryDep,
    settings: SettingsDep,
    buffers: BuffersDep,
    asked: OptionsDep,
) -> ClassifyResponse:
    """Classify one or more images (multipart `file` parts, or a raw image body) with the
    default model (the only one, or VITSERVE_DEFAULT_MODEL)."""
    served = Served(repository, settings, buffers)
    return await served.classify(request, response, None, None, asked)


@router.post("/v1/models/{name}/classify", **ROUTE)
async def classify_with(
    request: Request,
    response: Response,
    repository: RepositoryDep,
    settings: SettingsDep,
    buffers: BuffersDep,
    asked: OptionsDep,
    name: str,
) -> ClassifyResponse:
    """Classify with the newest served version of model `name`."""
    served = Served(repository, settings, buffers)
    return await served.classify(request, response, name, None, asked)


@router.post("/v1/models/{name}/versions/{version}/classify", **ROUTE)
async def classify_with_version(
    request: Request,
    response: Response,
    repository: RepositoryDep,
    settings: SettingsDep,
    buffers: BuffersDep,
    asked: OptionsDep,
    name: str,
    version: str,
) -> ClassifyResponse:
    """Classify with one served version of model `name`."""
    served = Served(repository, settings, buffers)
    return await served.classify(request, response, name, version, asked)


@dataclass(frozen=True)
class Served:
    """What answering a classify request needs from the app."""

    repository: ModelRepository
    settings: Settings
    buffers: BufferBudget

    async def classify(
        self,
        request: Request,
        response: Response,
        name: str | None,
        version: str | None,
        asked: Options,
    ) -> ClassifyResponse:
        repository = self.repository
        repository.runtime(name, version)  # 404 / 503 before the body is read
        with self.buffers.permit() as permit:  # the request's bytes count until it is answered
            images = await read_images(request, UploadLimits.from_settings(self.settings), permit)
            deadline = time.perf_counter() + self.settings.request_timeout_s
            # The version is chosen and admitted in one step, after the body: a swap meanwhile
            # is seen whole.
            runtime = repository.runtime(name, version)
            with runtime.reserve(len(images)) as admitted:
                work = runtime.infer_images(admitted, images, keep_images=asked.attention == "png")
                outcome = await within_deadline(request, work, deadline)
        seen = _seen(outcome)
        results = [
            _result(runtime, outcome, row, asked.top_k, asked.attention)
            for row in range(len(images))
        ]
        if asked.attention == "png":
            loop = asyncio.get_running_loop()
            pngs = await asyncio.gather(
                *(
                    loop.run_in_executor(repository.preprocess_pool, _heatmap, one, rollout)
                    for one, rollout in zip(seen, outcome.attention, strict=True)
                )
            )
            for result, one, png in zip(results, seen, pngs, strict=True):
                result.attention = AttentionPng(
                    grid=runtime.config.grid, png=png, crop=_rounded(one.box)
                )
        response.headers["x-queue-time"] = f"{outcome.queue_s * 1000:.2f}"
        response.headers["x-inference-time"] = f"{outcome.inference_s * 1000:.2f}"
        return ClassifyResponse(
            model=ModelRef(name=runtime.name, version=runtime.version), results=results
        )


def _result(
    runtime: ModelRuntime, outcome: Inference, row: int, k: int, attention: str
) -> ImageResult:
    labels = runtime.config.labels
    probabilities: np.ndarray = softmax(outcome.logits[row])
    predictions = [
        Prediction(label=labels[index], index=index, score=score)
        for index, score in top_k(probabilities, k)
    ]
    result = ImageResult(predictions=predictions, attention=None)
    if attention == "grid":
        result.attention = AttentionGrid(
            grid=runtime.config.grid,
            map=scale_attention(outcome.attention[row]).tolist(),
            crop=_rounded(_seen(outcome)[row].box),
        )
    return result


def _seen(outcome: Inference) -> list[Seen]:
    if outcome.seen is None:  # infer_images always says what the model saw
        raise RuntimeError("an inference of encoded images without what the model saw")
    return outcome.seen


def _rounded(box: Box) -> Box:
    """The crop box as answered: a thousandth of a pixel is precise enough for any overlay."""
    return (round(box[0], 3), round(box[1], 3), round(box[2], 3), round(box[3], 3))


def _heatmap(seen: Seen, rollout: np.ndarray) -> str:
    """attention=png: the heatmap over the image as sent (blocking; preprocessing pool)."""
    if seen.shown is None:
        raise RuntimeError("a heatmap asked of an image not kept for it")
    return heatmap_png(seen.shown, rollout, scale_box(seen.box, seen.size, seen.shown.size))
