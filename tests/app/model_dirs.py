"""Model directories made from the tests' tiny model: broken ones (a config that does not fit
its graph, a graph with symbolic output widths) and one whose session run never ends on bright
images (a real onnxruntime Loop), for the load checks and the watchdog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.model_config import CONFIG_FILE, MODEL_FILE


def copy_model_dir(source: Path, out: Path, **config_changes: Any) -> Path:
    """A copy of `source` with top-level config.json fields replaced (`preprocess` merged)."""
    shutil.copytree(source, out)
    path = out / CONFIG_FILE
    config = json.loads(path.read_text())
    preprocess = {**config["preprocess"], **config_changes.pop("preprocess", {})}
    config.update(config_changes, preprocess=preprocess)
    path.write_text(json.dumps(config))
    return out


def with_symbolic_widths(source: Path, out: Path, labels: int) -> Path:
    """`source` with `labels` labels, whose logits go through a Reshape to their own runtime
    shape: the graph no longer says how wide they are, only a run shows it."""
    copy_model_dir(source, out, labels=[str(i) for i in range(labels)])
    model = onnx.load(out / MODEL_FILE)
    graph = model.graph
    _rename_output(graph, "logits", "logits_raw")
    graph.node.extend(
        [
            helper.make_node("Shape", ["logits_raw"], ["logits_shape"]),
            helper.make_node("Reshape", ["logits_raw", "logits_shape"], ["logits"]),
        ]
    )
    for output in graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.checker.check_model(model)
    onnx.save(model, out / MODEL_FILE)
    return out


def _rename_output(graph: onnx.GraphProto, name: str, new_name: str) -> None:
    """Make the node output `name` an intermediate called `new_name`; the caller adds a node
    that produces `name` again."""
    for node in graph.node:
        node.output[:] = [new_name if value == name else value for value in node.output]
        node.input[:] = [new_name if value == name else value for value in node.input]


def with_endless_runs(source: Path, out: Path) -> Path:
    """`source` whose logits wait for a Loop of max(0, max(pixel_values)) * 1e9 small matrix
    products: none for the warm-up's zeros and for dark images (below 0 after normalisation),
    practically endless for any bright one. The outputs are unchanged."""
    copy_model_dir(source, out)
    model = onnx.load(out / MODEL_FILE)
    graph = model.graph
    _rename_output(graph, "logits", "logits_raw")
    rng = np.random.default_rng(0)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.float32(1e9), "endless_scale"),
            numpy_helper.from_array(np.float32(0.0), "endless_zero"),
            numpy_helper.from_array(np.eye(64, dtype=np.float32), "endless_state"),
            numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "endless_w"),
        ]
    )
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("MatMul", ["state", "endless_w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),
        ],
        "endless_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [64, 64]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [64, 64]),
        ],
    )
    graph.node.extend(
        [
            helper.make_node("ReduceMax", ["pixel_values"], ["brightest"], keepdims=0),
            helper.make_node("Relu", ["brightest"], ["positive"]),
            helper.make_node("Mul", ["positive", "endless_scale"], ["trips_float"]),
            helper.make_node("Cast", ["trips_float"], ["trips"], to=TensorProto.INT64),
            helper.make_node("Loop", ["trips", "", "endless_state"], ["final"], body=body),
            helper.make_node("ReduceSum", ["final"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "endless_zero"], ["nothing"]),
            helper.make_node("Add", ["logits_raw", "nothing"], ["logits"]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, out / MODEL_FILE)
    return out
