"""Every error the API answers, its status and code, and the handlers that render them.

All responses share one JSON shape: `{"error": {"code": str, "message": str}}`.
"""

from __future__ import annotations

import json
import logging
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.metrics import Metrics

log = logging.getLogger(__name__)

RejectReason = str  # queue_full | timeout | client_gone | invalid | unauthorized


class ApiError(Exception):
    """An answer other than 200: its status, code, and the rejection reason it counts as."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    reason: ClassVar[RejectReason | None] = None

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class EmptyImage(ApiError):
    status, code, reason = 400, "empty_image", "invalid"


class InvalidImage(ApiError):
    status, code, reason = 400, "invalid_image", "invalid"


class PayloadTooLarge(ApiError):
    status, code, reason = 413, "payload_too_large", "invalid"


class ImageTooLarge(ApiError):
    status, code, reason = 413, "image_too_large", "invalid"


class InvalidRequest(ApiError):
    """A request the protocol cannot accept (Open Inference Protocol: a bad tensor, a load in
    poll mode)."""

    status, code, reason = 400, "invalid_request", "invalid"


class ModelNotFound(ApiError):
    status, code = 404, "model_not_found"


class Unauthorized(ApiError):
    """No API key, or not one of `VITSERVE_API_KEYS` (which key, or how close, is not said)."""

    status, code, reason = 401, "unauthorized", "unauthorized"

    def __init__(self, message: str = "a valid API key is required: Authorization: Bearer <key>"):
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="vitserve"'})


class UnsupportedMediaType(ApiError):
    status, code, reason = 415, "unsupported_media_type", "invalid"


class InvalidParameter(ApiError):
    status, code, reason = 422, "invalid_parameter", "invalid"


class RequestTimeout(ApiError):
    """The body did not arrive within the body-read timeout: a slow or stalled client."""

    status, code, reason = 408, "request_timeout", "invalid"


class Overloaded(ApiError):
    status, code, reason = 503, "overloaded", "queue_full"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class NotReady(ApiError):
    status, code = 503, "not_ready"

    def __init__(self, message: str = "the model is loading or warming up") -> None:
        super().__init__(message, {"Retry-After": "1"})


class Timeout(ApiError):
    status, code, reason = 504, "timeout", "timeout"


class ClientGone(ApiError):
    """The client disconnected before its answer; nobody reads this one (nginx's 499)."""

    status, code, reason = 499, "client_gone", "client_gone"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_content(code: str, message: str) -> dict[str, dict[str, str]]:
    """The one JSON shape of every error."""
    return {"error": {"code": code, "message": message}}


def error_body(code: str, message: str) -> bytes:
    """An error as bytes, for answers written below the app (app/http_limits.py)."""
    return json.dumps(error_content(code, message)).encode()


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    """An error as the app answers it."""
    return JSONResponse(error_content(code, message), status_code=status, headers=headers)


def _metrics(request: Request) -> Metrics | None:
    return getattr(request.app.state, "metrics", None)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ApiError):
        return await unexpected_error_handler(request, exc)
    metrics = _metrics(request)
    if metrics is not None and exc.reason is not None:
        metrics.rejected.labels(exc.reason).inc()
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        return await unexpected_error_handler(request, exc)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        return await unexpected_error_handler(request, exc)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    )
    metrics = _metrics(request)
    if metrics is not None:
        metrics.rejected.labels("invalid").inc()
    return error_response(422, InvalidParameter.code, problems or "invalid parameters")


async def memory_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Memory ran out for this request (an image beyond what this server can hold): the
    request was too large for this server, not a server fault."""
    log.warning("out of memory on %s %s", request.method, request.url.path)
    metrics = _metrics(request)
    if metrics is not None:
        metrics.rejected.labels("invalid").inc()
    return error_response(
        413, PayloadTooLarge.code, "the request needs more memory than this server has for it"
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception, ours and the framework's, to the one JSON error shape."""
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(MemoryError, memory_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
