"""Request body -> image bytes: the Content-Type, the declared length (413 before any body is
read), a body-read deadline (408), the bytes held at once across requests (503), and multipart
parsing in a worker thread with caps on parts and part-header bytes. The event loop only moves
bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.buffers import BufferPermit
from app.errors import (
    ApiError,
    ClientGone,
    InvalidParameter,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from app.settings import Settings

FIELD = "file"
RAW_TYPES = ("application/octet-stream",)
MAX_BOUNDARY = 70  # RFC 2046's limit on a multipart boundary
CLOSE = {"Connection": "close"}  # the rest of the body is not read: end the connection


@dataclass(frozen=True)
class UploadLimits:
    """What one request body may be: bytes, multipart parts (of any name) and their header
    bytes, and how long its bytes may take to arrive."""

    max_bytes: int
    max_parts: int
    max_part_header_bytes: int
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            settings.max_upload_bytes,
            settings.max_parts,
            settings.max_part_header_bytes,
            settings.body_read_timeout_s,
        )


async def read_images(request: Request, limits: UploadLimits, permit: BufferPermit) -> list[bytes]:
    """The images of a request: each `file` part of a multipart form, or the raw body."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    media = media_type.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary or len(boundary) > MAX_BOUNDARY:
            raise InvalidParameter(
                f"multipart/form-data needs a boundary of 1 to {MAX_BOUNDARY} characters"
            )
        body = await read_body(request, limits, permit)
        return await asyncio.to_thread(split_multipart, body, boundary, limits)
    if media.startswith("image/") or media in RAW_TYPES:
        return [await read_body(request, limits, permit)]
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not supported: send multipart/form-data with "
        "'file' parts, or the image itself as image/* or application/octet-stream"
    )


async def read_body(request: Request, limits: UploadLimits, permit: BufferPermit) -> bytes:
    """The whole body within the limits. A declared length over the limit is refused before
    the body is read; an undeclared body over it is read to its end and dropped, so the client,
    still sending, gets the answer rather than a reset connection."""
    declared = _declared_length(request)
    if declared is not None and declared > limits.max_bytes:
        raise PayloadTooLarge(
            f"the body is declared as {declared} bytes (limit {limits.max_bytes})", dict(CLOSE)
        )
    _hold(permit, declared or 0)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limits.max_bytes:
                    _hold(permit, size)
                    chunks.append(chunk)
                else:
                    chunks.clear()
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the body did not arrive within {limits.body_timeout_s:g} s", dict(CLOSE)
        ) from exc
    except ClientDisconnect as exc:  # left mid-upload: a 499 like any client gone, not a 500
        raise ClientGone("the client disconnected while sending its body") from exc
    if size > limits.max_bytes:
        raise PayloadTooLarge(f"the body is {size} bytes (limit {limits.max_bytes})")
    return b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _hold(permit: BufferPermit, size: int) -> None:
    try:
        permit.hold_at_least(size)
    except ApiError as exc:
        exc.headers.update(CLOSE)
        raise


def split_multipart(body: bytes, boundary: bytes, limits: UploadLimits) -> list[bytes]:
    """The `file` parts of a multipart/form-data body, in order; other fields are ignored but
    count against the caps. Blocking: run it in a worker thread."""
    parts: list[tuple[bytes | None, list[bytes]]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    name: list[bytes | None] = [None]
    header_bytes = [0]

    def count_header(size: int) -> None:
        header_bytes[0] += size
        if header_bytes[0] > limits.max_part_header_bytes:
            raise PayloadTooLarge(
                f"the multipart part headers pass {limits.max_part_header_bytes} bytes"
            )

    def on_part_begin() -> None:
        if len(parts) >= limits.max_parts:
            raise PayloadTooLarge(f"the multipart body has more than {limits.max_parts} parts")
        name[0] = None
        parts.append((None, []))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        header["value"] += data[start:end]

    def on_header_end() -> None:
        if header["field"].lower() == b"content-disposition":
            _, params = parse_options_header(header["value"])
            name[0] = params.get(b"name")
        header["field"], header["value"] = b"", b""

    def on_headers_finished() -> None:
        parts[-1] = (name[0], parts[-1][1])

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].append(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # the parser's own errors, whatever their type
        raise InvalidParameter("malformed multipart body") from exc
    files = [b"".join(chunks) for part_name, chunks in parts if part_name == FIELD.encode()]
    if not files:
        raise InvalidParameter(f"the multipart body has no {FIELD!r} part")
    return files
