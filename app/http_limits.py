"""The limits uvicorn lacks, added to its httptools protocol (uvicorn takes a protocol class as
its `http` option): the bytes of a request's line and headers (431), the time they may take
(408, or the connection is just closed if nothing arrived), and the connections open at once
(503 + `Retry-After`, answered without reading the request).

uvicorn has options for none of these (its issue #157 lists the header timeout as not done):
its keep-alive timer is reset by every byte, so a client trickling a header line a second
holds its connection for as long as it likes, and httptools buffers headers of any size. The
body's limits live in the app (app/uploads.py), where they can answer in the API's own way.
These answers are written here, below the app, so they are not in the app's metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body
from app.settings import Settings


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(settings.max_header_bytes, settings.header_timeout_s, settings.max_connections)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with `limits` on headers and connections."""

    limits: ClassVar[HttpLimits]

    @classmethod
    def with_limits(cls, limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
        """The protocol class to give uvicorn (`http=`)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = False
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "overloaded",
                f"the server has {self.limits.max_connections} connections open; retry shortly",
                retry_after_s=1,
            )
            return
        self._start_reading_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Counted whole, before parsing: a chunk is at most the transport's read size, so
        # httptools never holds more than the limit plus one read of header bytes.
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_headers
            and self._header_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                f"the request line and headers pass {self.limits.max_header_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._start_reading_headers()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def _start_reading_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._headers_too_slow
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._reading_headers or self.transport.is_closing():
            return
        if self._header_bytes == 0:  # an idle connection: nobody to answer
            self.transport.close()
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            "request_timeout",
            f"the headers did not arrive within {self.limits.header_timeout_s:g} s",
        )

    def _refuse(
        self, status: HTTPStatus, code: str, message: str, retry_after_s: int | None = None
    ) -> None:
        """Answer in the API's JSON error shape and close the connection."""
        self._reading_headers = False
        self._stop_header_timer()
        body = error_body(code, message)
        head = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
        ]
        if retry_after_s is not None:
            head.append(f"retry-after: {retry_after_s}")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)
        self.transport.close()
