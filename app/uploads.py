"""Request body -> image bytes: content-type check, size limit, multipart `file` parts."""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import ClientGone, InvalidParameter, PayloadTooLarge, UnsupportedMediaType

FIELD = "file"
RAW_TYPES = ("application/octet-stream",)


async def read_images(request: Request, max_bytes: int) -> list[bytes]:
    """The images of a request: each `file` part of a multipart form, or the raw body."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    media = media_type.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidParameter("multipart/form-data without a boundary")
        return split_multipart(await read_body(request, max_bytes), boundary)
    if media.startswith("image/") or media in RAW_TYPES:
        return [await read_body(request, max_bytes)]
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not supported: send multipart/form-data with "
        "'file' parts, or the image itself as image/* or application/octet-stream"
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or 413 once it passes `max_bytes` (the rest is read and dropped, so the
    client, still sending, gets the answer rather than a reset connection)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_bytes:
                chunks.append(chunk)
            else:
                chunks.clear()
    except ClientDisconnect as exc:  # left mid-upload: a 499 like any client gone, not a 500
        raise ClientGone("the client disconnected while sending its body") from exc
    if size > max_bytes:
        raise PayloadTooLarge(f"the body is {size} bytes (limit {max_bytes})")
    return b"".join(chunks)


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The `file` parts of a multipart/form-data body, in order; other fields are ignored."""
    parts: list[tuple[bytes | None, list[bytes]]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    name: list[bytes | None] = [None]

    def on_part_begin() -> None:
        name[0] = None
        parts.append((None, []))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
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

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidParameter(f"malformed multipart body: {exc}") from exc
    files = [b"".join(chunks) for part_name, chunks in parts if part_name == FIELD.encode()]
    if not files:
        raise InvalidParameter(f"the multipart body has no {FIELD!r} part")
    return files
