"""The inference front: images in, answers out.

bytes -> image (images.py) -> tensor (preprocess.py), in a thread pool -> batcher -> session
(one inference thread) -> softmax / top-k / attention (postprocess.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from app.batcher import Batcher, Result
from app.errors import ApiError, NotReady
from app.heatmap import fit_long_side, heatmap_png
from app.images import DecodeLimits, decode_image
from app.metrics import Metrics
from app.postprocess import scale_attention, softmax, top_k
from app.preprocess import Box, Size, crop_box, normalise, resize_and_crop, scale_box
from app.schemas import AttentionGrid, AttentionPng, ImageResult, Prediction
from app.session import OnnxModel
from app.settings import Settings

log = logging.getLogger(__name__)

AttentionMode = Literal["grid", "png", "none"]


@dataclass
class Prepared:
    """One decoded image: the model's input; the region of the image it saw, `box`, in the
    pixels of the image as sent (`size`, after EXIF orientation); and, when a heatmap is wanted,
    the image to draw it on (`shown`, 8-bit, long side at most VITSERVE_ATTENTION_PNG_MAX_SIDE).
    """

    tensor: np.ndarray
    box: Box
    size: Size
    shown: Image.Image | None


@dataclass
class Classification:
    results: list[ImageResult]
    queue_s: float
    inference_s: float


class Classifier:
    """Owns the thread pools and the batcher around one loaded model."""

    def __init__(
        self,
        model: OnnxModel,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """`on_failure(reason)`: the service cannot go on (a dead batcher, a hung run)."""
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.ready = False
        self._on_failure = on_failure
        self._preprocess_pool = ThreadPoolExecutor(
            settings.decode_threads, thread_name_prefix="preprocess"
        )
        self._decode_limits = DecodeLimits(
            settings.max_image_pixels,
            settings.image_formats,
            min_side=model.config.preprocess.resize,
        )
        # attention=png draws on the image itself: JPEG draft mode must keep enough of it.
        self._heatmap_decode_limits = replace(
            self._decode_limits,
            min_side=max(model.config.preprocess.resize, settings.attention_png_max_side),
        )
        self._inference_pool = ThreadPoolExecutor(
            settings.inference_workers, thread_name_prefix="onnxruntime"
        )
        self.batcher = Batcher(
            model.run,
            self._inference_pool,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            workers=settings.inference_workers,
            metrics=metrics,
            run_timeout_s=settings.run_timeout_s,
            on_failure=self._fail,
        )

    def _fail(self, reason: str) -> None:
        self.ready = False
        if self._on_failure is not None:
            self._on_failure(reason)

    async def start(self) -> None:
        """Warm up with a full batch, start batching, then report ready."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for _ in range(self.settings.warmup_runs):  # one run at a time: cancellable between
            await loop.run_in_executor(
                self._inference_pool, self.model.warm_up, self.settings.max_batch_size
            )
        self.batcher.start()
        self.ready = True
        self.metrics.set_ready(self.model.config.name, self.model.config.version, True)
        log.info(
            "warmed up with %d x batch %d in %.2f s; ready",
            self.settings.warmup_runs,
            self.settings.max_batch_size,
            time.perf_counter() - started,
        )

    async def stop(self) -> None:
        """Answer every queued image, then release the threads (waiting for them off the
        event loop, which keeps serving until the server stops it)."""
        self.ready = False
        self.metrics.set_ready(self.model.config.name, self.model.config.version, False)
        await self.batcher.stop()
        for pool in (self._preprocess_pool, self._inference_pool):
            await asyncio.to_thread(pool.shutdown, wait=True)

    def prepare(self, data: bytes, keep_image: bool) -> Prepared:
        """Bytes -> model input (blocking; runs in the preprocessing pool)."""
        started = time.perf_counter()
        spec = self.model.config.preprocess
        decoded = decode_image(
            data, self._heatmap_decode_limits if keep_image else self._decode_limits
        )
        image = decoded.image
        crop = resize_and_crop(image, spec)
        box = scale_box(crop_box(image.size, spec), image.size, decoded.size)
        shown = fit_long_side(image, self.settings.attention_png_max_side) if keep_image else None
        prepared = Prepared(normalise(crop, spec), box, decoded.size, shown)
        self.metrics.preprocess_duration.observe(time.perf_counter() - started)
        return prepared

    async def classify(
        self, images: list[bytes], k: int, attention: AttentionMode
    ) -> Classification:
        """Classify images in order; they may be spread over several batches."""
        if not self.ready:
            raise NotReady()
        self.batcher.reserve(len(images))
        pending = len(images)  # admitted, not yet handed to the batcher
        futures: list[asyncio.Future[Result]] = []
        try:
            prepared = await self._prepare_all(images, keep_image=attention == "png")
            for item in prepared:
                futures.append(self.batcher.submit(item.tensor))
                pending -= 1
            outcomes = await asyncio.gather(*futures)
        finally:
            self.batcher.release(pending)
            for future in futures:
                future.cancel()  # no-op when done; drops it before compute otherwise
        self.metrics.images.inc(len(images))
        results = [
            self._answer(outcome, item, k, attention)
            for outcome, item in zip(outcomes, prepared, strict=True)
        ]
        if attention == "png":
            loop = asyncio.get_running_loop()
            pngs = await asyncio.gather(
                *(
                    loop.run_in_executor(self._preprocess_pool, _heatmap, item, outcome.outputs[1])
                    for outcome, item in zip(outcomes, prepared, strict=True)
                )
            )
            for result, item, png in zip(results, prepared, pngs, strict=True):
                result.attention = AttentionPng(
                    grid=self.model.config.grid, png=png, crop=_rounded(item.box)
                )
        return Classification(
            results,
            queue_s=max(outcome.queue_s for outcome in outcomes),
            inference_s=max(outcome.inference_s for outcome in outcomes),
        )

    async def _prepare_all(self, images: list[bytes], keep_image: bool) -> list[Prepared]:
        """Decode and preprocess in the pool; the first failure (in order) is the answer."""
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(self._preprocess_pool, self.prepare, data, keep_image)
            for data in images
        ]
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, ApiError):
                if len(images) > 1:
                    outcome.message = f"file {index}: {outcome.message}"
                raise outcome
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, Prepared)]

    def _answer(
        self, outcome: Result, item: Prepared, k: int, attention: AttentionMode
    ) -> ImageResult:
        logits, rollout = outcome.outputs
        labels = self.model.config.labels
        predictions = [
            Prediction(label=labels[index], index=index, score=score)
            for index, score in top_k(softmax(logits), k)
        ]
        result = ImageResult(predictions=predictions, attention=None)
        if attention == "grid":
            grid = self.model.config.grid
            result.attention = AttentionGrid(
                grid=grid, map=scale_attention(rollout).tolist(), crop=_rounded(item.box)
            )
        return result


def _rounded(box: Box) -> Box:
    """The crop box as answered: a thousandth of a pixel is precise enough for any overlay."""
    return (round(box[0], 3), round(box[1], 3), round(box[2], 3), round(box[3], 3))


def _heatmap(item: Prepared, rollout: np.ndarray) -> str:
    if item.shown is None:
        raise RuntimeError("a heatmap was asked for an image prepared without keep_image")
    return heatmap_png(item.shown, rollout, scale_box(item.box, item.size, item.shown.size))
