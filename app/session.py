"""The onnxruntime session: which providers, how many threads, warm-up, one batch run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.model_config import MODEL_FILE, OUTPUT_NAMES, PIXEL_VALUES, ModelConfig, read_model_config
from app.settings import Providers, Settings

log = logging.getLogger(__name__)


CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

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


@dataclass
class OnnxModel:
    """A loaded model: its config and its session; `run` is one batch, blocking."""

    config: ModelConfig
    session: ort.InferenceSession
    intra_op_threads: int

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width = self.config.preprocess.crop
        return 3, height, width

    def run(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 -> logits (B, C) and attention rollout (B, gh, gw)."""
        logits, attention = self.session.run(list(OUTPUT_NAMES), {PIXEL_VALUES: pixel_values})
        return np.asarray(logits), np.asarray(attention)

    def warm_up(self, batch_size: int) -> None:
        """One full-size batch of zeros, so the first request pays no allocation cost."""
        batch = np.zeros((batch_size, *self.input_shape), dtype=np.float32)
        logits, attention = self.run(batch)
        assert logits.shape == (batch_size, len(self.config.labels)), logits.shape
        assert attention.shape == (batch_size, *self.config.grid), attention.shape


def load_model(
    model_dir: Path, settings: Settings, intra_op_threads: int | None = None
) -> OnnxModel:
    """Read config.json, open model.onnx on the providers the settings allow, check them.
    `intra_op_threads`: this session's share of the settings' thread budget (default: all)."""
    config = read_model_config(model_dir)
    wanted, required = requested_providers(settings.providers, ort.get_available_providers())
    threads = intra_op_threads or settings.onnx_threads
    session = ort.InferenceSession(
        str(model_dir / MODEL_FILE),
        sess_options=session_options(settings, threads),
        providers=wanted,
    )
    in_use = list(session.get_providers())
    if required is not None and (not in_use or in_use[0] != required):
        raise ProviderError(
            f"VITSERVE_PROVIDERS={settings.providers} requires {required}, but the session runs "
            f"on {', '.join(in_use)} (is a GPU and its CUDA/cuDNN libraries present?)"
        )
    names = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
    if PIXEL_VALUES not in names[0] or not set(OUTPUT_NAMES) <= names[1]:
        raise ValueError(
            f"{model_dir / MODEL_FILE} must take {PIXEL_VALUES!r} and give {OUTPUT_NAMES}; "
            f"it takes {sorted(names[0])} and gives {sorted(names[1])}"
        )
    log.info(
        "loaded %s v%s from %s on %s (asked for %s), %d intra-op threads",
        config.name,
        config.version,
        model_dir,
        ", ".join(in_use),
        ", ".join(wanted),
        threads,
    )
    return OnnxModel(config, session, threads)
