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
from app.model_config import MODEL_FILE, ModelConfig, read_model_config
from app.providers import CPU, CUDA, TENSORRT, preload_gpu_libraries, provider_options
from app.settings import Providers, Settings

log = logging.getLogger(__name__)

INPUT = "pixel_values"
OUTPUTS = ("logits", "attention")

# What each setting asks onnxruntime for, and the provider the session must then run on.
_REQUESTS: dict[Providers, tuple[list[str], str | None]] = {
    "auto": ([CUDA, CPU], None),
    "cpu": ([CPU], CPU),
    "cuda": ([CUDA, CPU], CUDA),
    "tensorrt": ([TENSORRT, CUDA, CPU], TENSORRT),
}


class ProviderError(RuntimeError):
    """The providers asked for by name are not what the session runs on."""


def requested_providers(setting: Providers, available: list[str]) -> tuple[list[str], str | None]:
    """The providers to ask onnxruntime for, and the one the session is required to run on."""
    wanted, required = _REQUESTS[setting]
    if required is not None and required not in available:
        raise ProviderError(
            f"VITSERVE_PROVIDERS={setting} asks for {required}, but this onnxruntime only offers "
            f"{', '.join(available)}"
        )
    return [p for p in wanted if p in available], required


def session_options(settings: Settings) -> ort.SessionOptions:
    """Thread counts and spinning as the settings say; one run at a time."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.onnx_threads
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
            logits, attention = self.session.run(list(OUTPUTS), {INPUT: pixel_values})
        return np.asarray(logits)[:count], np.asarray(attention)[:count]

    def warm_up(self, batch_size: int) -> None:
        """A batch of zeros at every bucket size (or one full-size batch), so that no request
        pays for an allocation, an engine build or a graph capture."""
        for size in self.buckets or (batch_size,):
            batch = np.zeros((size, *self.input_shape), dtype=np.float32)
            started = time.perf_counter()
            logits, attention = self.run(batch)
            log.debug("warm-up run at batch %d: %.2f s", size, time.perf_counter() - started)
            if logits.shape != (size, len(self.config.labels)) or attention.shape != (
                size,
                *self.config.grid,
            ):
                raise ValueError(
                    f"warm-up at batch {size}: outputs {logits.shape} and {attention.shape} do "
                    f"not match the config's {len(self.config.labels)} labels and grid "
                    f"{self.config.grid}"
                )


def batch_runner(
    session: ort.InferenceSession, config: ModelConfig, settings: Settings
) -> BatchRunner | None:
    """IO binding (`VITSERVE_IO_BINDING`) or CUDA graphs (`VITSERVE_CUDA_GRAPHS`), else None."""
    on_gpu = session.get_providers()[0] in (CUDA, TENSORRT)
    height, width = config.preprocess.crop
    if settings.cuda_graphs and on_gpu:
        return CudaGraphSession(
            session,
            INPUT,
            {OUTPUTS[0]: (len(config.labels),), OUTPUTS[1]: tuple(config.grid)},
            bucket_sizes(settings.max_batch_size),
            (3, height, width),
            settings.device_id,
        )
    if settings.io_binding:
        return BoundSession(
            session,
            INPUT,
            OUTPUTS,
            settings.max_batch_size,
            (3, height, width),
            device="cuda" if on_gpu else "cpu",
            device_id=settings.device_id,
            slots=settings.inference_workers,
        )
    return None


def load_model(model_dir: Path, settings: Settings) -> OnnxModel:
    """Read config.json, open model.onnx on the providers the settings allow, check them."""
    config = read_model_config(model_dir)
    preload_gpu_libraries(settings.providers)
    wanted, required = requested_providers(settings.providers, ort.get_available_providers())
    if TENSORRT in wanted:
        log.info(
            "TensorRT: building or loading engines for batch 1..%d (cache: %s); this can take "
            "minutes without a cache",
            settings.max_batch_size,
            settings.trt_cache_dir or "none",
        )
    started = time.perf_counter()
    session = ort.InferenceSession(
        str(model_dir / MODEL_FILE),
        sess_options=session_options(settings),
        providers=provider_options(
            wanted, settings, config.preprocess.crop, settings.max_batch_size
        ),
    )
    in_use = list(session.get_providers())
    if required is not None and (not in_use or in_use[0] != required):
        raise ProviderError(
            f"VITSERVE_PROVIDERS={settings.providers} requires {required}, but the session runs "
            f"on {', '.join(in_use)} (is a GPU and its CUDA/cuDNN libraries present?)"
        )
    names = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
    if INPUT not in names[0] or not set(OUTPUTS) <= names[1]:
        raise ValueError(
            f"{model_dir / MODEL_FILE} must take {INPUT!r} and give {OUTPUTS}; "
            f"it takes {sorted(names[0])} and gives {sorted(names[1])}"
        )
    buckets = bucket_sizes(settings.max_batch_size) if settings.bucketed else None
    log.info(
        "loaded %s v%s from %s on %s (asked for %s) in %.1f s, %d intra-op threads, "
        "batch sizes %s, %s",
        config.name,
        config.version,
        model_dir,
        ", ".join(in_use),
        ", ".join(wanted),
        time.perf_counter() - started,
        settings.onnx_threads,
        ", ".join(map(str, buckets)) if buckets else f"1..{settings.max_batch_size}",
        "CUDA graphs" if settings.cuda_graphs else "IO binding" if settings.io_binding else "run",
    )
    return OnnxModel(config, session, buckets, batch_runner(session, config, settings))
