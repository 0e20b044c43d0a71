"""What the protocol says about the server and a model, as plain dicts (REST sends them as
JSON; gRPC copies them into its messages)."""

from __future__ import annotations

from typing import Any

from app.model_config import ATTENTION, INPUT_NAME, LOGITS
from app.oip.tensors import BYTES, FP32
from app.runtime import ModelRuntime

SERVER_NAME = "vitserve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
PLATFORM = "onnxruntime_onnx"

IMAGE = "image"  # encoded image files, decoded and preprocessed as /classify does
PROBABILITIES = "probabilities"
OUTPUTS = (PROBABILITIES, LOGITS, ATTENTION)
CLASS_OUTPUTS = (PROBABILITIES, LOGITS)  # the classification extension applies to these


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}


def model_metadata(runtime: ModelRuntime, versions: list[str]) -> dict[str, Any]:
    """Inputs (a request gives one of the two) and outputs of a model version."""
    _, height, width = runtime.model.input_shape
    grid_h, grid_w = runtime.config.grid
    classes = len(runtime.config.labels)
    return {
        "name": runtime.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [
            {"name": IMAGE, "datatype": BYTES, "shape": [-1]},
            {"name": INPUT_NAME, "datatype": FP32, "shape": [-1, 3, height, width]},
        ],
        "outputs": [
            {"name": PROBABILITIES, "datatype": FP32, "shape": [-1, classes]},
            {"name": LOGITS, "datatype": FP32, "shape": [-1, classes]},
            {"name": ATTENTION, "datatype": FP32, "shape": [-1, grid_h, grid_w]},
        ],
    }
