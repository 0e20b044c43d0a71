"""Dynamic batching in plain asyncio.

One task owns the queue. Each image is an item with its own future. A batch closes when it
holds `max_batch_size` images or `max_wait_s` after its first image was queued, whichever comes
first; items whose caller has gone (future cancelled) are dropped before they cost compute; the
batch runs off the event loop; every future is resolved, with its row of the outputs or with an
exception. Admission is bounded: `reserve(n)` refuses at once when the queue is full, and
otherwise hands out a `Permit` for n images that gives back, on leaving its `with`, the places
it did not spend.

Up to `workers` batches compute at once, each on a thread of the executor. A batch is formed
when a worker is free, so while every worker is busy the queue fills, and the next batch starts
the moment one finishes (its first image has waited `max_wait_s` already). A finished batch
frees its worker before it answers its callers: the next batch computes while they are written.

Two things the batcher cannot recover from are reported to `on_failure` (the service then
exits, see app/failure.py): its own task ending while not closing (a bug, or a cancellation),
and a run of `predict` still not returned after `run_timeout_s` (a hung session: its thread
cannot be stopped, and every later batch would queue behind it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import numpy as np

from app.errors import NotReady, Overloaded, PayloadTooLarge

log = logging.getLogger(__name__)

Outputs = tuple[np.ndarray, ...]
Predictor = Callable[[np.ndarray], Outputs]  # (B, ...) -> outputs, each (B, ...); blocking


class Observer(Protocol):
    """Where the batcher reports (one model version's metrics, app.metrics.RuntimeMetrics)."""

    def batch_run(self, size: int, waits_s: list[float], inference_s: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


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


class Permit:
    """Admission of `count` images: `submit` spends one place each; leaving the `with` (or
    `release`) gives back the places not spent."""

    def __init__(self, batcher: Batcher, count: int) -> None:
        self._batcher = batcher
        self.remaining = count

    def submit(self, tensor: np.ndarray) -> asyncio.Future[Result]:
        """Queue one admitted image; its future gets its rows of the outputs."""
        if self.remaining <= 0:
            raise RuntimeError("the permit has no place left")
        self.remaining -= 1
        return self._batcher._enqueue(tensor)

    def release(self) -> None:
        self._batcher._set_depth(self._batcher.depth - self.remaining)
        self.remaining = 0

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


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
        workers: int = 1,
        observer: Observer | None = None,
        run_timeout_s: float = 0.0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.workers = workers
        self._observer = observer
        self.run_timeout_s = run_timeout_s  # 0: runs are not watched
        self._on_failure = on_failure
        self._queue: deque[_Item] = deque()
        self._reserved = 0  # admitted images not yet taken into a batch
        self._queued = 0  # of those, the ones in the queue whose caller still waits
        self._wakeup = asyncio.Event()
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()  # batches computing or answering
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Images admitted and not yet computing."""
        return self._reserved

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name="batcher")
        self._task.add_done_callback(self._on_task_end)

    def _on_task_end(self, task: asyncio.Task[None]) -> None:
        """The loop may end only when asked to stop; anything else is reported."""
        if task.cancelled():
            if not self._closing:
                self._fail("the batcher task was cancelled")
        elif (error := task.exception()) is not None:
            log.error("the batcher task died", exc_info=error)
            self._fail(f"the batcher task died: {error!r}")
        elif not self._closing:
            self._fail("the batcher task ended")

    def _fail(self, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(reason)

    async def stop(self) -> None:
        """Refuse new images, run every queued one, then end the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:  # a task that died has been reported (_on_task_end)
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def alive(self) -> bool:
        """Started and its loop still running."""
        return self._task is not None and not self._task.done()

    def reserve(self, count: int) -> Permit:
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
        return Permit(self, count)

    def _enqueue(self, tensor: np.ndarray) -> asyncio.Future[Result]:
        """Queue one image that a permit admitted."""
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
        if self._observer is not None:
            self._observer.queue_depth(value)

    async def _run_forever(self) -> None:
        try:
            while True:
                self._forget_gone()
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._free_workers.acquire()
                self._forget_gone()  # callers may have gone while every worker was busy
                if self._queue:
                    await self._fill(deadline=self._queue[0].enqueued + self.max_wait_s)
                batch = self._take()
                if not batch:
                    self._free_workers.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._run_batch(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        finally:  # every taken batch is answered before the loop ends
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

    def _forget_gone(self) -> None:
        while self._queue and self._queue[0].counted_out:
            self._queue.popleft()

    async def _fill(self, deadline: float) -> None:
        """Wait until the batch is full, its deadline has passed, or the batcher closes."""
        while self._queued < self.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
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
        """Compute on the worker taken for it, free the worker, then answer every caller."""
        try:
            answers = await self._compute_each(batch)
        except BaseException as exc:  # cancelled: still resolve every future
            self._free_workers.release()
            _fail(batch, exc)
            raise
        self._free_workers.release()
        try:
            await asyncio.sleep(0)  # the next batch is handed to the worker before we answer
        finally:
            for item, answer in zip(batch, answers, strict=True):
                if item.future.done():
                    continue
                if isinstance(answer, Result):
                    item.future.set_result(answer)
                else:
                    item.future.set_exception(answer)

    async def _compute_each(self, batch: list[_Item]) -> list[Result | Exception]:
        """Each item's rows of the outputs, or the exception its own run raised."""
        started = time.perf_counter()
        try:
            outputs = await self._compute(np.stack([item.tensor for item in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # One bad image must not fail its batch-mates: run each on its own.
            log.warning("a batch of %d failed (%s); retrying one by one", len(batch), exc)
            answers: list[Result | Exception] = []
            for item in batch:
                answers += [exc] if item.future.done() else await self._compute_each([item])
            return answers
        finally:
            if self._observer is not None:
                waits = [started - item.enqueued for item in batch]
                self._observer.batch_run(len(batch), waits, time.perf_counter() - started)
        inference_s = time.perf_counter() - started
        return [
            Result(
                tuple(output[row] for output in outputs),
                started - item.enqueued,
                inference_s,
                len(batch),
            )
            for row, item in enumerate(batch)
        ]

    async def _compute(self, batch: np.ndarray) -> Outputs:
        loop = asyncio.get_running_loop()
        run = loop.run_in_executor(self._executor, self._predict, batch)
        if self.run_timeout_s > 0:
            done, _ = await asyncio.wait({run}, timeout=self.run_timeout_s)
            if not done:  # the callers keep waiting, for their answer or their deadline
                self._fail(
                    f"a session run (a batch of {len(batch)}) has not returned after "
                    f"{self.run_timeout_s:g} s (VITSERVE_RUN_TIMEOUT_S)"
                )
        outputs = await run
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
