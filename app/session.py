"""The onnxruntime session: which providers, how many threads, warm-up, one batch run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.model_check import ModelError, check_graph, check_outputs, load_config
from app.model_config import INPUT_NAME, MODEL_FILE, OUTPUT_NAMES, ModelConfig
from app.providers import ProviderError, gpu_visible, requested_providers
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


@dataclass
class OnnxModel:
    """A loaded model: its config and its session; `run` is one batch, blocking."""

    config: ModelConfig
    session: ort.InferenceSession
    model_dir: Path
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
        logits, attention = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixel_values})
        return np.asarray(logits), np.asarray(attention)

    def warm_up(self, batch_size: int) -> None:
        """One full-size batch of zeros, so the first request pays no allocation cost; its
        outputs must have the shapes the config promises (ModelError otherwise)."""
        batch = np.zeros((batch_size, *self.input_shape), dtype=np.float32)
        try:
            logits, attention = self.run(batch)
        except Exception as exc:  # onnxruntime's own errors: the graph cannot run this input
            raise ModelError(
                self.model_dir, f"a batch of {batch_size} does not run: {exc}"
            ) from exc
        check_outputs(self.model_dir, self.config, batch_size, logits, attention)


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
    available = ort.get_available_providers()
    wanted, required = requested_providers(settings.providers, available, gpu_visible())
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(settings, threads), providers=wanted
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
        max_batch_size=config.serving.max_batch_size or settings.max_batch_size,
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
    return OnnxModel(config, session, model_dir, threads)
