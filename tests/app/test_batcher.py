"""The batcher alone, with a fake predictor: batching proven by timing, deadlines, dropped
callers, admission, failures that stay with their image, draining on stop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.batcher import Batcher, Outputs
from app.errors import NotReady, Overloaded, PayloadTooLarge


class FakePredictor:
    """Doubles its inputs; records batch sizes; fails on a NaN input; can be held."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> Outputs:
        self.release.wait(5)
        if np.isnan(batch).any():
            raise ValueError("NaN input")
        self.batches.append(len(batch))
        return (batch * 2, batch.sum(axis=1))


def make(predict: FakePredictor, **settings: float) -> Batcher:
    options = dict(max_batch_size=3, max_wait_s=10.0, max_queue=6) | settings
    batcher = Batcher(
        predict,
        ThreadPoolExecutor(1),
        max_batch_size=int(options["max_batch_size"]),
        max_wait_s=options["max_wait_s"],
        max_queue=int(options["max_queue"]),
    )
    batcher.start()
    return batcher


def submit(batcher: Batcher, value: float) -> asyncio.Future:
    with batcher.reserve(1) as permit:
        return permit.submit(np.full(2, value, dtype=np.float32))


def test_calls_wait_until_the_batch_is_full() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        batcher = make(predict)  # max_wait 10 s: only a full batch runs early
        first, second = submit(batcher, 1), submit(batcher, 2)
        await asyncio.sleep(0.2)
        assert not first.done() and not second.done()
        third = submit(batcher, 3)
        results = await asyncio.wait_for(asyncio.gather(first, second, third), 2)
        assert predict.batches == [3]
        assert [r.outputs[0].tolist() for r in results] == [[2, 2], [4, 4], [6, 6]]
        assert [float(r.outputs[1]) for r in results] == [2, 4, 6]
        assert all(r.batch_size == 3 and r.queue_s >= 0.2 for r in results[:2])
        await batcher.stop()

    asyncio.run(scenario())


def test_a_partial_batch_runs_at_the_deadline() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        batcher = make(predict, max_wait_s=0.1)
        started = asyncio.get_running_loop().time()
        result = await asyncio.wait_for(submit(batcher, 1), 2)
        waited = asyncio.get_running_loop().time() - started
        assert predict.batches == [1] and 0.09 <= waited < 1.0
        assert result.outputs[0].tolist() == [2, 2]
        await batcher.stop()

    asyncio.run(scenario())


def test_cancelled_callers_are_dropped_before_compute() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        batcher = make(predict, max_wait_s=0.2)
        gone, kept = submit(batcher, 1), submit(batcher, 2)
        gone.cancel()
        await asyncio.sleep(0)
        assert batcher.depth == 1  # the place is freed at once
        assert (await asyncio.wait_for(kept, 2)).outputs[0].tolist() == [4, 4]
        assert predict.batches == [1]
        await batcher.stop()

    asyncio.run(scenario())


def test_one_bad_image_never_fails_its_batch_mates() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        batcher = make(predict)
        futures = [submit(batcher, 1), submit(batcher, float("nan")), submit(batcher, 3)]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 2)
        assert results[0].outputs[0].tolist() == [2, 2]
        assert isinstance(results[1], ValueError)
        assert results[2].outputs[0].tolist() == [6, 6]
        await batcher.stop()

    asyncio.run(scenario())


def test_admission_is_bounded() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        predict.release.clear()  # hold the first batch in the predictor
        batcher = make(predict, max_batch_size=2, max_queue=4, max_wait_s=0.0)
        running = [submit(batcher, 1), submit(batcher, 2)]
        await asyncio.sleep(0.1)  # taken into the (held) batch: no longer queued
        assert batcher.depth == 0
        queued = [submit(batcher, i) for i in range(4)]
        assert batcher.depth == 4
        with pytest.raises(Overloaded) as full:
            batcher.reserve(1)
        assert full.value.headers == {"Retry-After": "1"}
        with pytest.raises(PayloadTooLarge):
            batcher.reserve(5)
        predict.release.set()
        await asyncio.wait_for(asyncio.gather(*running, *queued), 2)
        assert batcher.depth == 0 and predict.batches == [2, 2, 2]
        with batcher.reserve(4) as permit:
            assert batcher.depth == 4
            permit.submit(np.zeros(2, dtype=np.float32))
        assert batcher.depth == 1  # the three places not spent are given back on exit
        await batcher.stop()

    asyncio.run(scenario())


def test_stop_answers_every_queued_image() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        batcher = make(predict, max_wait_s=60.0, max_batch_size=4, max_queue=8)
        futures = [submit(batcher, i) for i in range(6)]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(batcher.stop(), 2)  # does not wait out max_wait
        assert all(f.done() and not f.cancelled() for f in futures)
        assert predict.batches == [4, 2]
        with pytest.raises(NotReady):
            batcher.reserve(1)

    asyncio.run(scenario())


def test_workers_compute_batches_at_once() -> None:
    async def scenario() -> None:
        predict = FakePredictor()
        predict.release.clear()  # hold every run in the predictor
        batcher = Batcher(
            predict,
            ThreadPoolExecutor(2),
            max_batch_size=2,
            max_wait_s=0.0,
            max_queue=6,
            workers=2,
        )
        batcher.start()
        futures = [submit(batcher, i) for i in range(6)]
        await asyncio.sleep(0.1)
        assert batcher.depth == 2  # two batches taken by the two workers, one still queued
        predict.release.set()
        results = await asyncio.wait_for(asyncio.gather(*futures), 2)
        assert predict.batches == [2, 2, 2]
        assert [r.outputs[0].tolist() for r in results] == [[2 * i, 2 * i] for i in range(6)]
        await batcher.stop()

    asyncio.run(scenario())


def test_a_run_past_the_watchdog_is_reported_and_still_answered() -> None:
    async def scenario() -> None:
        predict, reasons = FakePredictor(), []
        predict.release.clear()  # the run hangs until released
        batcher = Batcher(
            predict,
            ThreadPoolExecutor(1),
            max_batch_size=1,
            max_wait_s=0,
            max_queue=2,
            run_timeout_s=0.2,
            on_failure=reasons.append,
        )
        batcher.start()
        future = submit(batcher, 1)
        await asyncio.sleep(0.5)
        assert reasons == [
            "a session run (a batch of 1) has not returned after 0.2 s (VITSERVE_RUN_TIMEOUT_S)"
        ]
        assert not future.done()
        predict.release.set()
        assert (await asyncio.wait_for(future, 2)).outputs[0].tolist() == [2, 2]
        await batcher.stop()
        assert len(reasons) == 1  # a stop that was asked for is no failure

    asyncio.run(scenario())


def test_a_dead_batcher_task_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        reasons: list[str] = []
        batcher = Batcher(
            FakePredictor(),
            ThreadPoolExecutor(1),
            max_batch_size=2,
            max_wait_s=0,
            max_queue=2,
            on_failure=reasons.append,
        )

        def bug() -> list:
            raise RuntimeError("a bug in the batcher")

        monkeypatch.setattr(batcher, "_take", bug)  # what a bug in the loop would do
        batcher.start()
        submit(batcher, 1)
        await asyncio.sleep(0.2)
        assert reasons == ["the batcher task died: RuntimeError('a bug in the batcher')"]

    asyncio.run(scenario())
