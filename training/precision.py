"""Precision conversion of a checked float32 graph: float16 for GPUs, int8 for CPUs.

Both keep float32 inputs and outputs and leave LayerNormalization and Softmax in float: the
normalisation's variance and the softmax's exponentials lose the small differences they depend
on in low precision (fp16 ViTs collapse; int8 attention probabilities round to a few levels).
How close the result stays to float32 is `training.agreement`'s job.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from app.model_config import INPUT_NAME

Precision = Literal["fp32", "fp16", "int8"]

# Ops kept in float32 by the fp16 conversion; ReduceMean (average pooling, the last layer's head
# mean) is cheap to keep exact.
FP16_OP_BLOCK_LIST = ["LayerNormalization", "Softmax", "ReduceMean"]


def convert_to_fp16(src: str | Path, dst: str | Path) -> Path:
    """Float32 ONNX -> float16 ONNX with float32 inputs/outputs and the ops of
    `FP16_OP_BLOCK_LIST` kept in float32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "values truncated to fp16 range" for tiny weights
        half = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=FP16_OP_BLOCK_LIST
        )
    onnx.save(half, str(dst))
    return Path(dst)


@dataclass(frozen=True)
class Int8Options:
    """How `quantize_int8` quantizes. The defaults are what bench/int8_bench.py measured best on
    a 2-core AVX2 CPU: 1.6x float32's img/s, no top-1 loss (docs/performance.md)."""

    # QDQ: QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer kernels;
    # QOperator: integer ops (QLinearMatMul, ...) written into the graph directly.
    format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = True  # one weight scale per output channel
    # Which ops compute in int8; everything else (LayerNorm, Softmax, GELU, adds) stays float.
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv")
    # Only the ops with constant weights (the linear layers, the patch embedding, the head):
    # the attention products (Q K^T, P V) and the rollout's products stay float.
    weights_only: bool = True
    # QDQ: outputs of the quantized ops stay float (DequantizeLinear -> MatMul becomes one
    # MatMulIntegerToFloat kernel, and no requantization follows).
    float_outputs: bool = True
    # 7-bit weights: AVX2/AVX-512 without VNNI multiply u8 x s8 pairs into saturating int16.
    reduce_range: bool = False
    calibration_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    # onnxruntime's transformer optimizer first (fuses GELU, bias adds, skip LayerNorms).
    optimize: bool = False


def weighted_nodes(model_path: str | Path, op_types: tuple[str, ...]) -> list[str]:
    """Names of the nodes of `op_types` that multiply by a constant (an initializer)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type in op_types and any(name in constants for name in node.input[1:2])
    ]


def _optimize_transformer(src: Path, dst: Path) -> Path:
    """onnxruntime's transformer fusions (LayerNorm, GELU, bias, skip connections), float32."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), model_type="vit", opt_level=1, use_gpu=False)
    optimized.save_model_to_file(str(dst))
    return dst


class ImageBatches:
    """onnxruntime's calibration reader over preprocessed images (N, 3, H, W), in batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 16) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    options: Int8Options = Int8Options(),
) -> Path:
    """Float32 ONNX -> statically quantized int8 ONNX, activations' ranges calibrated on
    `calibration` (preprocessed images drawn from the training data, (N, 3, H, W) float32).

    Weights are signed int8, activations unsigned (what onnxruntime's CPU kernels are fastest
    at); only `options.op_types` are quantized."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError(f"calibration images must be (N>0, 3, H, W), not {calibration.shape}")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory(prefix="vitserve-int8-") as tmp:
        source = Path(src)
        if options.optimize:
            source = _optimize_transformer(source, Path(tmp) / "optimized.onnx")
        # Shape inference and constant folding first, as onnxruntime recommends: the quantizer
        # needs every tensor's shape to choose per-channel axes.
        prepared = Path(tmp) / "prepared.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
            nodes = weighted_nodes(prepared, options.op_types) if options.weights_only else None
            extra = {"OpTypesToExcludeOutputQuantization": list(options.op_types)}
            quantize_static(
                str(prepared),
                str(dst),
                ImageBatches(calibration),
                quant_format=QuantFormat.QDQ if options.format == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=list(options.op_types),
                nodes_to_quantize=nodes,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[options.calibration_method],
                calibration_providers=["CPUExecutionProvider"],
                extra_options=extra if options.float_outputs else {},
            )
    return Path(dst)
