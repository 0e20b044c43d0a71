"""torch -> ONNX and its self-check: trace a module to ONNX with a dynamic batch axis, then
make onnxruntime reproduce PyTorch's outputs at two batch sizes, or fail.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.cores import available_cores
from app.model_config import ATTENTION, INPUT_NAME, LOGITS, OUTPUT_NAMES

OPSET = 18  # >= 17: LayerNormalization is one op
CHECK_BATCH_SIZES = (1, 5)  # the self-check's batch sizes; the trace uses 2
# Self-check tolerances, float32 ONNX vs PyTorch: |a - b| <= atol + rtol * |b|.
LOGITS_TOL = (1e-4, 1e-3)  # (atol, rtol)
ATTENTION_TOL = (1e-5, 1e-3)


class ExportCheckError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


def ort_session(
    path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0
) -> Any:
    """An onnxruntime session with all graph optimisations, `threads` intra-op threads (default:
    every available core) and spinning off, since other sessions may share the process."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=list(providers))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's optimiser logs every rewrite at INFO and both warn about internals:
    silence them while it runs (its progress report on stdout is off with verbose=False)."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(module: nn.Module, path: str | Path, image_size: int, opset: int = OPSET) -> Path:
    """Trace `module` (pixel_values -> logits[, attention]) to ONNX at `path` with a dynamic
    batch axis, by the torch.export-based exporter, weights inside the file (so < 2 GB)."""
    path = Path(path)
    module = module.eval()
    example = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        outputs = module(example)
    output_names = list(OUTPUT_NAMES[: len(outputs)]) if isinstance(outputs, tuple) else [LOGITS]
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=output_names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"pixel_values": {0: batch}},
            external_data=False,
            verbose=False,
        )
    return path


def check_outputs(
    expected: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    tolerances: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Raise `ExportCheckError` unless every expected output is matched in shape and value
    (|actual - expected| <= atol + rtol * |expected|, per output)."""
    tolerances = tolerances or {LOGITS: LOGITS_TOL, ATTENTION: ATTENTION_TOL}
    for name, want in expected.items():
        if name not in actual:
            raise ExportCheckError(f"the ONNX model has no output {name!r}")
        got = actual[name]
        if got.shape != want.shape:
            raise ExportCheckError(f"{name}: shape {got.shape}, PyTorch gives {want.shape}")
        atol, rtol = tolerances.get(name, LOGITS_TOL)
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            worst = float(np.max(np.abs(got.astype(np.float64) - want)))
            raise ExportCheckError(
                f"{name}: ONNX and PyTorch differ by up to {worst:.3g} "
                f"(allowed {atol:g} + {rtol:g} * |value|), batch {want.shape[0]}"
            )


def verify_onnx(
    module: nn.Module,
    path: str | Path,
    image_size: int,
    batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
    seed: int = 0,
) -> None:
    """Run the ONNX file and `module` on the same random inputs at each batch size; raise
    `ExportCheckError` if onnxruntime does not reproduce PyTorch."""
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    generator = torch.Generator().manual_seed(seed)
    for batch in batch_sizes:
        x = torch.randn(batch, 3, image_size, image_size, generator=generator)
        with torch.no_grad():
            out = module(x)
        outputs = out if isinstance(out, tuple) else (out,)
        expected = {n: t.numpy() for n, t in zip(names, outputs, strict=True)}
        got = session.run(None, {INPUT_NAME: x.numpy()})
        check_outputs(expected, dict(zip(names, got, strict=True)))
