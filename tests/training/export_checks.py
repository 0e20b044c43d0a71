"""Helpers of the export and precision tests: PyTorch's reference outputs, running a model
directory in onnxruntime, the export command in this process, and a graph's value types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from model.rollout import attention_rollout
from model.vit import VisionTransformer
from training.onnx_export import ort_session
from training.run import main as training_cli


def reference(model: VisionTransformer, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's logits and the class-token rollout by the library's full-matrix definition."""
    with torch.no_grad():
        logits, attentions = model.forward_with_attention(x)
        fused = model(x)
    torch.testing.assert_close(fused, logits, atol=1e-5, rtol=1e-5)
    return logits.numpy(), attention_rollout(attentions, model.config.grid_size).numpy()


def export_cli(*args: str) -> int:
    """`python -m training.run export ARGS`, in this process."""
    return training_cli(["export", *args])


def run_onnx(model_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort_session(model_dir / "model.onnx")
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"pixel_values": x}), strict=True))


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named value in a graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        types[value.name] = value.type.tensor_type.elem_type
    return types
