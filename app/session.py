"""The onnxruntime session: which providers, how many threads, warm-up, one batch run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from app.bound_session import BoundSession, CudaGraphSession
from app.buckets import bucket_for, bucket_sizes, pad_batch
from app.model_check import ModelError, check_graph, check_outputs, load_config
from app.model_config import INPUT_NAME, MODEL_FILE, OUTPUT_NAMES, ModelConfig
from app.providers import (
    CUDA,
    TENSORRT,
    ProviderError,
    gpu_visible,
    preload_gpu_libraries,
    provider_options,
    requested_providers,
)
from app.settings import Settings

log = logging.getLogger(__name__)


def session_options(settings: Settings, intra_op_threads: int | None = None) -> ort.SessionOptions:
    """Thread counts (`intra_op_threads`, or the settings' whole budget) and spinning as the
    settings say; one run at a time."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or settings.onnx_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


class BatchRunner(Protocol):
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]: ...


@dataclass
class OnnxModel:
    """A loaded model: its config and its session; `run` is one batch, blocking. With `buckets`,
    every run is padded to a bucket size and the padding cut from the outputs; with a `runner`,
    runs go through IO binding (or CUDA graphs) instead of `session.run`."""

    config: ModelConfig
    session: ort.InferenceSession
    model_dir: Path
    intra_op_threads: int
    buckets: tuple[int, ...] | None = None
    runner: BatchRunner | None = field(default=None, repr=False)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width = self.config.preprocess.crop
        return 3, height, width

    def run(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 -> logits (B, C) and attention rollout (B, gh, gw)."""
        count = len(pixel_values)
        if self.buckets is not None:
            pixel_values = pad_batch(pixel_values, bucket_for(count, self.buckets))
        if self.runner is not None:
            logits, attention = self.runner.run(pixel_values)
        else:
            logits, attention = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixel_values})
        return np.asarray(logits)[:count], np.asarray(attention)[:count]

    def warm_up(self, batch_size: int) -> None:
        """A batch of zeros at every bucket size (or one full-size batch), so that no request
        pays for an allocation, an engine build or a graph capture; the outputs must have the
        shapes the config promises (ModelError otherwise)."""
        for size in self.buckets or (batch_size,):
            batch = np.zeros((size, *self.input_shape), dtype=np.float32)
            started = time.perf_counter()
            try:
                logits, attention = self.run(batch)
            except Exception as exc:  # onnxruntime's own errors: the graph cannot run this input
                raise ModelError(self.model_dir, f"a batch of {size} does not run: {exc}") from exc
            log.debug("warm-up at batch %d: %.2f s", size, time.perf_counter() - started)
            check_outputs(self.model_dir, self.config, size, logits, attention)


def batch_runner(
    session: ort.InferenceSession, config: ModelConfig, settings: Settings, max_batch_size: int
) -> BatchRunner | None:
    """IO binding (`VITSERVE_IO_BINDING`) or CUDA graphs (`VITSERVE_CUDA_GRAPHS`), else None."""
    on_gpu = session.get_providers()[0] in (CUDA, TENSORRT)
    height, width = config.preprocess.crop
    if settings.cuda_graphs and on_gpu:
        return CudaGraphSession(
            session,
            INPUT_NAME,
            {OUTPUT_NAMES[0]: (len(config.labels),), OUTPUT_NAMES[1]: tuple(config.grid)},
            bucket_sizes(max_batch_size),
            (3, height, width),
            settings.device_id,
        )
    if settings.io_binding:
        return BoundSession(
            session,
            INPUT_NAME,
            OUTPUT_NAMES,
            max_batch_size,
            (3, height, width),
            device="cuda" if on_gpu else "cpu",
            device_id=settings.device_id,
            slots=settings.inference_workers,
        )
    return None


def load_model(
    model_dir: Path, settings: Settings, intra_op_threads: int | None = None
) -> OnnxModel:
    """Read and check config.json, open model.onnx on the providers the settings allow, check
    the providers and the graph against the config. ModelError or ProviderError say why not.
    `intra_op_threads`: this session's share of the settings' thread budget (default: all)."""
    threads = intra_op_threads or settings.onnx_threads
    config = load_config(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelError(model_dir, f"no {MODEL_FILE}")
    max_batch_size = config.serving.max_batch_size or settings.max_batch_size
    available = ort.get_available_providers()
    wanted, required = requested_providers(settings.providers, available, gpu_visible())
    if CUDA in wanted or TENSORRT in wanted:
        preload_gpu_libraries(tensorrt=TENSORRT in wanted)
    if TENSORRT in wanted:
        log.info(
            "TensorRT: building or loading engines for batch 1..%d of %s (cache: %s); minutes "
            "without a cache",
            max_batch_size,
            model_dir,
            settings.trt_cache_dir or "none",
        )
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=session_options(settings, threads),
            providers=provider_options(wanted, settings, config.preprocess.crop, max_batch_size),
        )
    except Exception as exc:  # onnxruntime raises its own types for every kind of bad file
        raise ModelError(model_dir, f"onnxruntime cannot load {MODEL_FILE}: {exc}") from exc
    in_use = list(session.get_providers())
    if required is not None and (not in_use or in_use[0] != required):
        raise ProviderError(
            f"VITSERVE_PROVIDERS={settings.providers} requires {required}, but the session runs "
            f"on {', '.join(in_use)} (is a GPU and its CUDA/cuDNN libraries present?)"
        )
    check_graph(
        model_dir,
        config,
        inputs={i.name: (i.shape, i.type) for i in session.get_inputs()},
        outputs={o.name: o.shape for o in session.get_outputs()},
        max_batch_size=max_batch_size,
    )
    buckets = bucket_sizes(max_batch_size) if settings.bucketed else None
    runner = batch_runner(session, config, settings, max_batch_size)
    log.info(
        "loaded %s v%s from %s on %s (asked for %s) in %.1f s, %d intra-op threads, "
        "batch sizes %s, %s",
        config.name,
        config.version,
        model_dir,
        ", ".join(in_use),
        ", ".join(wanted),
        time.perf_counter() - started,
        threads,
        ", ".join(map(str, buckets)) if buckets else f"1..{max_batch_size}",
        type(runner).__name__ if runner else "session.run",
    )
    return OnnxModel(config, session, model_dir, threads, buckets, runner)
