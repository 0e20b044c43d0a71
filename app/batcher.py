"""Dynamic batching in plain asyncio.

One task owns the queue. Each image is an item with its own future. A batch closes when it
holds `max_batch_size` images or `max_wait_s` after its first image was queued, whichever comes
first; items whose caller has gone (future cancelled) are dropped before they cost compute; the
batch runs off the event loop; every future is resolved, with its row of the outputs or with an
exception. Admission is bounded: `reserve` refuses at once when the queue is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from app.errors import NotReady, Overloaded, PayloadTooLarge
from app.metrics import Metrics

log = logging.getLogger(__name__)

Outputs = tuple[np.ndarray, ...]
Predictor = Callable[[np.ndarray], Outputs]  # (B, ...) -> outputs, each (B, ...); blocking


@dataclass(frozen=True)
class Result:
    """One image's rows of the outputs, and how long it queued and computed."""

    outputs: Outputs
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Item:
    tensor: np.ndarray
    future: asyncio.Future[Result]
    enqueued: float = field(default_factory=time.perf_counter)
    counted_out: bool = False  # no longer counted in the queue depth


class Batcher:
    """Groups single-image tensors into batch runs of `predict`."""

    def __init__(
        self,
        predict: Predictor,
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._reserved = 0  # admitted images not yet taken into a batch
        self._queued = 0  # of those, the ones in the queue whose caller still waits
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Images admitted and not yet computing."""
        return self._reserved

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name="batcher")

    async def stop(self) -> None:
        """Refuse new images, run every queued one, then end the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    def reserve(self, count: int) -> None:
        """Admit `count` images or refuse at once: 413 if they could never fit, 503 if full."""
        if self._closing:
            raise NotReady("the server is shutting down")
        if count > self.max_queue:
            raise PayloadTooLarge(
                f"{count} images in one request; the queue holds {self.max_queue} at most"
            )
        if self._reserved + count > self.max_queue:
            raise Overloaded(
                f"the queue is full ({self._reserved} of {self.max_queue} images); retry later"
            )
        self._set_depth(self._reserved + count)

    def release(self, count: int) -> None:
        """Give back admissions that will not be submitted (e.g. an undecodable image)."""
        self._set_depth(self._reserved - count)

    def submit(self, tensor: np.ndarray) -> asyncio.Future[Result]:
        """Queue one reserved image; its future gets its rows of the outputs."""
        item = _Item(tensor, asyncio.get_running_loop().create_future())
        item.future.add_done_callback(lambda future: self._on_done(item))
        self._queue.append(item)
        self._queued += 1
        if self._queued == 1 or self._queued >= self.max_batch_size:
            self._wakeup.set()
        return item.future

    def _on_done(self, item: _Item) -> None:
        """A caller that gave up frees its place in the queue at once."""
        if item.future.cancelled() and not item.counted_out:
            self._count_out(item)

    def _count_out(self, item: _Item) -> None:
        item.counted_out = True
        self._queued -= 1
        self._set_depth(self._reserved - 1)

    def _set_depth(self, value: int) -> None:
        self._reserved = value
        if self._metrics is not None:
            self._metrics.queue_depth.set(value)

    async def _run_forever(self) -> None:
        while True:
            while self._queue and self._queue[0].counted_out:  # callers gone: forget them
                self._queue.popleft()
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill(deadline=self._queue[0].enqueued + self.max_wait_s)
            batch = self._take()
            if batch:
                await self._run_batch(batch)

    async def _fill(self, deadline: float) -> None:
        """Wait until the batch is full, its deadline has passed, or the batcher closes."""
        while self._queued < self.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """Pop up to a batch of items, dropping those whose caller has gone."""
        batch: list[_Item] = []
        while self._queue and len(batch) < self.max_batch_size:
            item = self._queue.popleft()
            if not item.counted_out:
                self._count_out(item)
            if not item.future.done():  # done before compute: cancelled by its caller
                batch.append(item)
        return batch

    async def _run_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(batch))
            for item in batch:
                self._metrics.queue_wait.observe(started - item.enqueued)
        try:
            outputs = await self._compute(np.stack([item.tensor for item in batch]))
            inference_s = time.perf_counter() - started
            for row, item in enumerate(batch):
                if not item.future.done():
                    rows = tuple(output[row] for output in outputs)
                    queue_s = started - item.enqueued
                    item.future.set_result(Result(rows, queue_s, inference_s, len(batch)))
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # one bad image must not fail its batch-mates: run each on its own
                log.warning("a batch of %d failed (%s); retrying one by one", len(batch), exc)
                for item in batch:
                    await self._run_batch([item])
        except BaseException as exc:  # cancelled: still resolve every future
            _fail(batch, exc)
            raise
        finally:
            if self._metrics is not None:
                self._metrics.inference_duration.observe(time.perf_counter() - started)

    async def _compute(self, batch: np.ndarray) -> Outputs:
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self._executor, self._predict, batch)
        if any(len(output) != len(batch) for output in outputs):
            raise RuntimeError("the predictor returned a different batch size")
        return outputs


def _fail(batch: list[_Item], exc: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            if isinstance(exc, asyncio.CancelledError):
                item.future.cancel()
            else:
                item.future.set_exception(exc)
