"""What the Open Inference Protocol tests share: the two models' names, inputs for them, and
the ONNX session's own answer to compare against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.model_config import INPUT_NAME, LOGITS, MODEL_FILE, read_model_config

TINY, OTHER = "vit-tiny-test", "vit-other"  # 32 px, 10 classes; 48 px, 3 classes


def pixels(model_dir: Path, count: int, seed: int = 0) -> np.ndarray:
    """Random preprocessed input (count, 3, H, W) for the model in `model_dir`."""
    height, width = read_model_config(model_dir).preprocess.crop
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, height, width), dtype=np.float32)


def session_logits(model_dir: Path, batch: np.ndarray) -> np.ndarray:
    """The logits onnxruntime gives for `batch`, without the server."""
    path = str(model_dir / MODEL_FILE)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([LOGITS], {INPUT_NAME: batch})[0]
