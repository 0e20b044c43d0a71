"""Run a request's work against its deadline and its client: 504 when time is up, 499 when the
client has gone; either way the work is cancelled, and its queued images with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from app.errors import ClientGone, Timeout

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (call only once the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def within_deadline(
    request: Request,
    work: Coroutine[Any, Any, T],
    deadline: float,
) -> T:
    """`work`'s result, unless the deadline (perf_counter) passes or the client leaves first
    (call it once the body has been read)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        timeout = max(0.0, deadline - time.perf_counter())
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task in done:
        return task.result()
    if watcher in done:
        raise ClientGone("the client disconnected before its answer")
    raise Timeout("the request was not answered within the request timeout")
