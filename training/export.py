"""Checkpoint -> model directory for serving: `model.onnx` (logits and the attention-rollout map,
computed inside the graph) and `config.json` (the schema of `app.model_config`).

The export checks itself: onnxruntime must reproduce PyTorch's outputs at two batch sizes, or it
fails. `fp16=True` converts the checked float32 graph to float16 (float32 inputs and outputs,
LayerNormalization and Softmax kept in float32) and reports its agreement with float32.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import pickle
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.cores import available_cores
from app.model_config import (
    ATTENTION,
    INPUT_NAME,
    LOGITS,
    MODEL_FILE,
    OUTPUT_NAMES,
    ModelConfig,
    ModelMetrics,
    ModelSource,
    write_model_config,
)
from model.load import load_model
from model.vit import VisionTransformer
from training.onnx_graph import ViTWithAttention
from training.preprocessing import preprocess_config_for

log = logging.getLogger(__name__)

OPSET = 18  # >= 17: LayerNormalization is one op
CHECK_BATCH_SIZES = (1, 5)  # the self-check's batch sizes; the trace uses 2
FP16_CHECK_INPUTS = 100
# Ops kept in float32 by the fp16 conversion: LayerNorm's variance and softmax's exponentials
# overflow or lose the small differences they depend on in half precision (fp16 ViTs collapse);
# ReduceMean (average pooling, the last layer's head mean) is cheap to keep exact.
FP16_OP_BLOCK_LIST = ["LayerNormalization", "Softmax", "ReduceMean"]
# Self-check tolerances, float32 ONNX vs PyTorch: |a - b| <= atol + rtol * |b|.
LOGITS_TOL = (1e-4, 1e-3)  # (atol, rtol)
ATTENTION_TOL = (1e-5, 1e-3)


class ExportCheckError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


# ---------------------------------------------------------------------------------------------
# onnxruntime


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


# ---------------------------------------------------------------------------------------------
# torch -> ONNX


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


# ---------------------------------------------------------------------------------------------
# float16


@dataclass
class Fp16Report:
    """How a float16 graph compares with its float32 original on fixed random inputs."""

    top1_agreement: float  # fraction of inputs with the same arg-max class
    max_abs_logit_diff: float
    max_abs_attention_diff: float
    num_inputs: int
    provider: str


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


def fp16_agreement(
    fp32_path: str | Path,
    fp16_path: str | Path,
    image_size: int,
    num_inputs: int = FP16_CHECK_INPUTS,
    batch_size: int = 20,
    seed: int = 0,
) -> Fp16Report:
    """Top-1 agreement and largest logit difference of the fp16 graph against fp32 on
    `num_inputs` fixed random inputs (on CUDA if onnxruntime has it, else the CPU)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    reference = ort_session(fp32_path, providers)
    half = ort_session(fp16_path, providers)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_inputs, 3, image_size, image_size, generator=generator).numpy()
    ref_logits, ref_attn, half_logits, half_attn = [], [], [], []
    for start in range(0, num_inputs, batch_size):
        feed = {INPUT_NAME: x[start : start + batch_size]}
        logits, attention = reference.run(None, feed)
        ref_logits.append(logits)
        ref_attn.append(attention)
        logits, attention = half.run(None, feed)
        half_logits.append(logits)
        half_attn.append(attention)
    a, b = np.concatenate(ref_logits), np.concatenate(half_logits)
    if not (np.isfinite(b).all() and np.isfinite(np.concatenate(half_attn)).all()):
        raise ExportCheckError("the float16 model gives non-finite outputs")
    return Fp16Report(
        top1_agreement=float(np.mean(a.argmax(-1) == b.argmax(-1))),
        max_abs_logit_diff=float(np.max(np.abs(a - b))),
        max_abs_attention_diff=float(
            np.max(np.abs(np.concatenate(ref_attn) - np.concatenate(half_attn)))
        ),
        num_inputs=num_inputs,
        provider=half.get_providers()[0],
    )


# ---------------------------------------------------------------------------------------------
# model directory


def _metrics(metrics: dict[str, Any] | None) -> ModelMetrics:
    """Keep the fields config.json knows (top1, top5, dataset); ignore the rest."""
    known = ModelMetrics.model_fields
    return ModelMetrics(**{k: v for k, v in (metrics or {}).items() if k in known})


def export_model(
    model: VisionTransformer,
    out_dir: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    labels: Sequence[str] | None = None,
    metrics: dict[str, Any] | None = None,
    source: ModelSource | None = None,
    fp16: bool = False,
) -> Path:
    """Write `model.onnx` and `config.json` for an in-memory model to `out_dir` and check them;
    returns `out_dir`. Labels default to the model's, else the class indices. The caller's model
    is left as it was (a training or GPU model is copied to the CPU in eval mode first)."""
    out_dir = Path(out_dir)
    weight = next(model.parameters())
    if model.training or weight.device.type != "cpu" or weight.dtype != torch.float32:
        model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    c = model.config
    if not c.num_classes:
        raise ValueError("the model has no classification head (num_classes=0)")
    labels = list(labels) if labels is not None else list(c.labels)
    labels = labels or [str(i) for i in range(c.num_classes)]
    if len(labels) != c.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {c.num_classes} classes")
    out_dir.mkdir(parents=True, exist_ok=True)

    wrapper = ViTWithAttention(model).eval()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        fp32_path = Path(tmp) / "model.fp32.onnx"
        export_onnx(wrapper, fp32_path, c.image_size)
        verify_onnx(wrapper, fp32_path, c.image_size)
        log.info("ONNX matches PyTorch at batch sizes %s", ", ".join(map(str, CHECK_BATCH_SIZES)))
        final = fp32_path
        if fp16:
            final = convert_to_fp16(fp32_path, Path(tmp) / "model.fp16.onnx")
            report = fp16_agreement(fp32_path, final, c.image_size)
            log.info(
                "fp16 vs fp32 on %d fixed inputs (%s): top-1 agreement %.1f%%, "
                "max |logit diff| %.3g, max |attention diff| %.3g",
                report.num_inputs,
                report.provider,
                100 * report.top1_agreement,
                report.max_abs_logit_diff,
                report.max_abs_attention_diff,
            )
        os.replace(final, out_dir / MODEL_FILE)

    config = ModelConfig(
        name=name or out_dir.resolve().name,
        version=version,
        architecture=c.name,
        labels=labels,
        image_size=(c.image_size, c.image_size),
        patch_size=c.patch_size,
        grid=c.grid_size,
        preprocess=preprocess_config_for(c.image_size),
        metrics=_metrics(metrics),
        source=source or ModelSource(),
        precision="fp16" if fp16 else "fp32",
    )
    write_model_config(out_dir, config)
    log.info("wrote %s", out_dir)
    return out_dir


def checkpoint_metrics(checkpoint: str | Path) -> dict[str, Any] | None:
    """The held-out metrics one of our checkpoints carries under `metrics`, if any (tensors are
    memory-mapped, not read)."""
    path = Path(checkpoint)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
        return None  # not a torch file, or not ours: no metrics
    metrics = state.get("metrics") if isinstance(state, dict) else None
    return metrics if isinstance(metrics, dict) else None


def read_labels(path: str | Path) -> list[str]:
    """A labels file: one label per line; blank lines ignored."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    arch: str | None = None,
    labels: list[str] | None = None,
    image_size: int | None = None,
    fp16: bool = False,
    name: str | None = None,
    version: str = "1",
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Export any checkpoint model/ loads (ours, timm, Hugging Face, .npz) to a checked model
    directory; returns `out_dir`. `labels` default to the checkpoint's, else the class indices;
    `metrics` (top1, top5, dataset) default to those the checkpoint carries."""
    loaded = load_model(checkpoint, arch=arch, image_size=image_size)
    if metrics is None and loaded.format == "native":
        metrics = checkpoint_metrics(checkpoint)
    return export_model(
        loaded.model,
        out_dir,
        name=name,
        version=version,
        labels=labels if labels is not None else (loaded.labels or None),
        metrics=metrics,
        source=ModelSource(checkpoint=str(checkpoint), format=loaded.format),
        fp16=fp16,
    )


# ---------------------------------------------------------------------------------------------
# command line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The `export` subcommand's arguments."""
    parser.description = "Export a checkpoint to a model directory (model.onnx + config.json)."
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="our checkpoint, a timm file, a Hugging Face directory or a .npz (detected)",
    )
    parser.add_argument(
        "--out", required=True, metavar="MODEL_DIR", help="model directory to write"
    )
    parser.add_argument(
        "--arch", metavar="NAME", help="architecture, e.g. vit_base_patch16_224 (if not stored)"
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="text file, one label per line (default: the checkpoint's, else class indices)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="input side in pixels (default: the checkpoint's; else positions are resampled)",
    )
    parser.add_argument(
        "--fp16", action="store_true", help="float16 weights and activations, for GPU serving"
    )
    parser.add_argument("--name", help="model name in config.json (default: the --out folder)")
    parser.add_argument("--version", default="1", help="model version in config.json")


def run(args: argparse.Namespace) -> int:
    """Run the export for parsed arguments; 0 on success, 1 if the self-check fails, 2 if the
    checkpoint or the labels cannot be used."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        export_checkpoint(
            args.checkpoint,
            args.out,
            arch=args.arch,
            labels=read_labels(args.labels) if args.labels else None,
            image_size=args.image_size,
            fp16=args.fp16,
            name=args.name,
            version=args.version,
        )
    except ExportCheckError as error:
        log.error("export check failed: %s", error)
        return 1
    except (OSError, ValueError) as error:
        log.error("export failed: %s", error)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.export ...`."""
    parser = argparse.ArgumentParser(prog="python -m training.export")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
