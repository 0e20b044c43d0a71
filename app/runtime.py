"""One loaded model version at work: its session, batcher, inference threads, limits and state.

bytes -> image (images.py) -> tensor (preprocess.py), in the repository's shared preprocessing
pool -> this version's batcher -> its session (its own inference threads) -> raw outputs. The
protocols (`/classify`, the Open Inference Protocol over REST and gRPC) turn those into answers.

Admission is a permit: `with runtime.reserve(n) as permit:` admits n images or refuses at once,
and gives back on exit the places it did not spend. The runtime counts the permits it has handed
out, so that `drain` can wait for every accepted request before it stops the batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from app.batcher import Batcher, Permit, Result
from app.errors import ApiError, InvalidRequest, NotReady
from app.heatmap import fit_long_side
from app.images import DecodeLimits, decode_image, follow_pixel_limit
from app.metrics import Metrics
from app.model_config import ModelConfig
from app.preprocess import Box, Size, crop_box, normalise, resize_and_crop, scale_box
from app.session import OnnxModel
from app.settings import Settings

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "draining", "unloaded"]


@dataclass(frozen=True)
class BatchLimits:
    """A version's batching: the settings, overridden by its config.json `serving` section."""

    max_batch_size: int
    max_wait_ms: float
    max_queue: int

    @classmethod
    def of(cls, settings: Settings, config: ModelConfig) -> BatchLimits:
        own = config.serving
        limits = cls(
            max_batch_size=own.max_batch_size or settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms if own.max_wait_ms is None else own.max_wait_ms,
            max_queue=own.max_queue or settings.max_queue,
        )
        if limits.max_queue < limits.max_batch_size:
            raise ValueError(
                f"max_queue ({limits.max_queue}) must hold one full batch "
                f"(max_batch_size {limits.max_batch_size})"
            )
        return limits


@dataclass
class Seen:
    """What the model saw of one image: `box`, the region it saw, in the pixels of the image as
    sent (`size`, after EXIF orientation); and, when a heatmap is wanted, the image to draw it
    on (`shown`: 8-bit, long side at most VITSERVE_ATTENTION_PNG_MAX_SIDE)."""

    box: Box
    size: Size
    shown: Image.Image | None


@dataclass
class Inference:
    """The raw outputs for a request's images, in order."""

    logits: np.ndarray  # (B, classes)
    attention: np.ndarray  # (B, gh, gw), the rollout as the model gives it
    seen: list[Seen] | None  # per image, for encoded images (not for pixel tensors)
    queue_s: float  # the longest any image queued
    inference_s: float  # the longest session run among its batches


class ModelRuntime:
    """A model version: loaded (session open, checked), then warmed up and ready, then drained."""

    def __init__(
        self,
        name: str,
        version: str,
        model: OnnxModel,
        settings: Settings,
        preprocess_pool: Executor,
        metrics: Metrics,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """`on_failure(reason)`: the service cannot go on (this version's batcher died, or a
        session run hung past VITSERVE_RUN_TIMEOUT_S)."""
        self.name = name
        self.version = version
        self.model = model
        self.settings = settings
        self.limits = BatchLimits.of(settings, model.config)
        self.state: State = "loading"
        self.metrics = metrics.for_model(name, version, model.providers)
        self._preprocess_pool = preprocess_pool
        self._inference_pool = ThreadPoolExecutor(
            settings.inference_workers, thread_name_prefix=f"onnxruntime-{name}-{version}"
        )
        self.batcher = Batcher(
            model.run,
            self._inference_pool,
            max_batch_size=self.limits.max_batch_size,
            max_wait_s=self.limits.max_wait_ms / 1000,
            max_queue=self.limits.max_queue,
            workers=settings.inference_workers,
            observer=self.metrics,
            run_timeout_s=settings.run_timeout_s,
            on_failure=on_failure,
        )
        follow_pixel_limit(settings.max_image_pixels)
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
        self.metrics.queue_capacity(self.limits.max_queue)
        # This version's images in the shared preprocessing pool at once, at most: a flood on
        # one model waits in its own line, not in front of every other model's images.
        self._preprocess_slots = asyncio.Semaphore(settings.decode_threads)
        self._permits = 0  # permits handed out and not yet returned
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    async def warm_up(self) -> None:
        """Full-batch runs (one at a time: cancellable between), then take requests."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for _ in range(self.settings.warmup_runs):
            await loop.run_in_executor(
                self._inference_pool, self.model.warm_up, self.limits.max_batch_size
            )
        self.batcher.start()
        self.state = "ready"
        self.metrics.set_ready(True)
        log.info(
            "%s v%s warmed up with %d x batch %d in %.2f s; ready",
            self.name,
            self.version,
            self.settings.warmup_runs,
            self.limits.max_batch_size,
            time.perf_counter() - started,
        )

    @contextmanager
    def reserve(self, count: int) -> Iterator[Permit]:
        """Admit `count` images (503 when not ready or full, 413 if they could never fit)."""
        if self.state != "ready":
            raise NotReady(f"model {self.name!r} version {self.version} is not ready")
        with self.batcher.reserve(count) as permit:
            self._permits += 1
            self._idle.clear()
            try:
                yield permit
            finally:
                self._permits -= 1
                if self._permits == 0:
                    self._idle.set()

    async def drain(self) -> None:
        """Take no new requests, answer every accepted one, then release the threads."""
        if self.state == "unloaded":
            return
        self.state = "draining"  # reserve refuses from now on
        self.metrics.set_ready(False)
        await self._idle.wait()
        await self.batcher.stop()
        await asyncio.to_thread(self._inference_pool.shutdown, True)
        self.metrics.remove()
        self.state = "unloaded"
        log.info("%s v%s drained and unloaded", self.name, self.version)

    def prepare(self, data: bytes, keep_image: bool) -> tuple[np.ndarray, Seen]:
        """Bytes -> model input, and what it saw of the image (blocking; preprocessing pool)."""
        started = time.perf_counter()
        spec = self.config.preprocess
        limits = self._heatmap_decode_limits if keep_image else self._decode_limits
        decoded = decode_image(data, limits)
        image = decoded.image
        tensor = normalise(resize_and_crop(image, spec), spec)
        box = scale_box(crop_box(image.size, spec), image.size, decoded.size)
        shown = fit_long_side(image, self.settings.attention_png_max_side) if keep_image else None
        self.metrics.preprocess_duration.observe(time.perf_counter() - started)
        return tensor, Seen(box, decoded.size, shown)

    async def infer_images(
        self, permit: Permit, images: list[bytes], keep_images: bool = False
    ) -> Inference:
        """Encoded images -> outputs; the first undecodable image (in order) is the answer.
        `keep_images`: keep each image, shrunk, to draw its heatmap on (`Seen.shown`)."""
        jobs = [self._prepare_in_pool(data, keep_images) for data in images]
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, ApiError) and len(images) > 1:
                outcome.message = f"file {index}: {outcome.message}"
            if isinstance(outcome, BaseException):
                raise outcome
        prepared = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
        return await self._run(
            permit, [tensor for tensor, _ in prepared], [seen for _, seen in prepared]
        )

    async def _prepare_in_pool(self, data: bytes, keep_image: bool) -> tuple[np.ndarray, Seen]:
        async with self._preprocess_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._preprocess_pool, self.prepare, data, keep_image)

    async def infer_pixels(self, permit: Permit, pixel_values: np.ndarray) -> Inference:
        """Preprocessed (B, 3, H, W) float32 -> outputs."""
        expected = self.model.input_shape
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != expected:
            raise InvalidRequest(
                f"pixel_values must have shape [-1, {', '.join(map(str, expected))}], "
                f"not {list(pixel_values.shape)}"
            )
        tensors = list(np.ascontiguousarray(pixel_values, dtype=np.float32))
        return await self._run(permit, tensors, None)

    async def _run(
        self, permit: Permit, tensors: list[np.ndarray], seen: list[Seen] | None
    ) -> Inference:
        futures: list[asyncio.Future[Result]] = [permit.submit(tensor) for tensor in tensors]
        try:
            results = await asyncio.gather(*futures)
        finally:
            for future in futures:
                future.cancel()  # no-op when done; drops it before compute otherwise
        self.metrics.images.inc(len(results))
        return Inference(
            logits=np.stack([result.outputs[0] for result in results]),
            attention=np.stack([result.outputs[1] for result in results]),
            seen=seen,
            queue_s=max(result.queue_s for result in results),
            inference_s=max(result.inference_s for result in results),
        )
