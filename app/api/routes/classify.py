"""POST /classify: images in, top-k labels and attention maps out."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.api.auth import API_KEY
from app.api.deps import BuffersDep, ClassifierDep, SettingsDep
from app.api.guard import within_deadline
from app.inference import AttentionMode
from app.schemas import ClassifyResponse, ErrorResponse, ModelRef
from app.uploads import UploadLimits, read_images

router = APIRouter(tags=["classify"], dependencies=[API_KEY])

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
        408: "request_timeout (the body arrived too slowly)",
        413: "payload_too_large, image_too_large",
        415: "unsupported_media_type",
        422: "invalid_parameter",
        503: "overloaded (with Retry-After), not_ready",
        504: "timeout",
    }.items()
}


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
)
async def classify(
    request: Request,
    response: Response,
    classifier: ClassifierDep,
    settings: SettingsDep,
    buffers: BuffersDep,
    top_k: Annotated[int, Query(ge=1, description="predictions per image")] = 5,
    attention: Annotated[AttentionMode, Query(description="attention map format")] = "grid",
) -> ClassifyResponse:
    """Classify one or more images (multipart `file` parts, or a raw image body)."""
    with buffers.permit() as permit:  # the request's bytes count until it is answered
        images = await read_images(request, UploadLimits.from_settings(settings), permit)
        deadline = time.perf_counter() + settings.request_timeout_s
        outcome = await within_deadline(
            request, classifier.classify(images, top_k, attention), deadline
        )
    response.headers["x-queue-time"] = f"{outcome.queue_s * 1000:.2f}"
    response.headers["x-inference-time"] = f"{outcome.inference_s * 1000:.2f}"
    config = classifier.model.config
    return ClassifyResponse(
        model=ModelRef(name=config.name, version=config.version), results=outcome.results
    )
