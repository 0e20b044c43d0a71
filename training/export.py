"""Checkpoint -> model directory for serving: `model.onnx` (logits and the attention-rollout map,
computed inside the graph) and `config.json` (the schema of `app.model_config`).

The float32 graph checks itself against PyTorch (`training.onnx_export`); a float16 or int8
graph is then converted from it (`training.precision`) and compared with it on a fixed image
set (`training.agreement`). An int8 graph that agrees with float32 on fewer held-out images than
the threshold is not written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.model_config import (
    MODEL_FILE,
    ModelConfig,
    ModelMetrics,
    ModelSource,
    PreprocessConfig,
    read_model_config,
    write_model_config,
)
from model.load import load_model
from model.vit import VisionTransformer
from training.agreement import AgreementReport, compare_graphs
from training.cli_options import add_dataclass_options, given_values, option
from training.onnx_export import (
    CHECK_BATCH_SIZES,
    ExportCheckError,
    export_onnx,
    verify_onnx,
)
from training.onnx_graph import ViTWithAttention
from training.precision import Int8Options, Precision, convert_to_fp16, quantize_int8
from training.preprocessing import preprocess_config_for

log = logging.getLogger(__name__)

RANDOM_CHECK_INPUTS = 100  # fp16 without --calibration: fixed random inputs


@dataclass(frozen=True)
class Conversion:
    """Which precision to write and how to check it against float32 (the command line's
    options, but `precision`, which --fp16/--int8 set)."""

    precision: Precision = "fp32"
    calibration: str | None = option(
        None,
        "training data (a folder, fractal, digits, mnist): int8 calibrates on its training "
        "split; --fp16/--int8 are checked on its held-out split (default: fp16 is checked on "
        "random inputs)",
    )
    calibration_images: int = option(256, "training images drawn at random to calibrate on")
    check_images: int | None = option(500, "held-out images compared with float32 (none: all)")
    min_agreement: float = option(
        0.99, "int8: refuse to write below this top-1 agreement with float32"
    )
    int8_options: Int8Options = field(default_factory=Int8Options)


def _random_images(spec: PreprocessConfig, count: int, seed: int = 0) -> np.ndarray:
    height, width = spec.crop
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, height, width), dtype=np.float32)


def convert_precision(
    fp32_path: Path, dst: Path, conversion: Conversion, spec: PreprocessConfig
) -> AgreementReport:
    """Write `conversion.precision`'s graph of `fp32_path` to `dst` and compare the two; raises
    `ExportCheckError` for non-finite outputs, or an int8 graph below `min_agreement`."""
    from training.data.arrays import check_images

    if conversion.calibration is None:
        if conversion.precision == "int8":
            raise ValueError("--int8 needs --calibration DATA: images of the training data")
        images, targets = _random_images(spec, RANDOM_CHECK_INPUTS), None
        convert_to_fp16(fp32_path, dst)
    else:
        drawn = check_images(
            conversion.calibration, spec, conversion.calibration_images, conversion.check_images
        )
        images, targets = drawn.held_out.images, drawn.held_out.targets
        if conversion.precision == "int8":
            quantize_int8(fp32_path, dst, drawn.calibration.images, conversion.int8_options)
        else:
            convert_to_fp16(fp32_path, dst)
    report = compare_graphs(fp32_path, dst, images, targets)
    log.info("%s vs fp32: %s", conversion.precision, report.describe())
    if conversion.precision == "int8" and report.top1_agreement < conversion.min_agreement:
        raise ExportCheckError(
            f"the int8 model agrees with float32 on {100 * report.top1_agreement:.2f}% of "
            f"{report.num_images} held-out images, below the {100 * conversion.min_agreement:g}% "
            "required; nothing written"
        )
    return report


def _metrics(metrics: dict[str, Any] | None) -> ModelMetrics:
    """Keep the fields config.json knows (top1, top5, dataset); ignore the rest."""
    known = ModelMetrics.model_fields
    return ModelMetrics(**{k: v for k, v in (metrics or {}).items() if k in known})


@contextlib.contextmanager
def _output_dir(out_dir: Path) -> Iterator[Path]:
    """`out_dir`, created if need be, and removed again if it was created here and a check
    fails (a refused export leaves nothing behind)."""
    existed = out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield out_dir
    except BaseException:
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _write_graph(
    fp32_path: Path, out_dir: Path, conversion: Conversion, spec: PreprocessConfig
) -> None:
    """Move the checked float32 graph, or its conversion, to `out_dir/model.onnx`."""
    final = fp32_path
    if conversion.precision != "fp32":
        final = fp32_path.with_name(f"model.{conversion.precision}.onnx")
        convert_precision(fp32_path, final, conversion, spec)
    os.replace(final, out_dir / MODEL_FILE)


def export_model(
    model: VisionTransformer,
    out_dir: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    labels: Sequence[str] | None = None,
    metrics: dict[str, Any] | None = None,
    source: ModelSource | None = None,
    conversion: Conversion = Conversion(),
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
    spec = preprocess_config_for(c.image_size)
    wrapper = ViTWithAttention(model).eval()
    with _output_dir(out_dir), tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        fp32_path = Path(tmp) / "model.fp32.onnx"
        export_onnx(wrapper, fp32_path, c.image_size)
        verify_onnx(wrapper, fp32_path, c.image_size)
        log.info("ONNX matches PyTorch at batch sizes %s", ", ".join(map(str, CHECK_BATCH_SIZES)))
        _write_graph(fp32_path, out_dir, conversion, spec)

    config = ModelConfig(
        name=name or out_dir.resolve().name,
        version=version,
        architecture=c.name,
        labels=labels,
        image_size=(c.image_size, c.image_size),
        patch_size=c.patch_size,
        grid=c.grid_size,
        preprocess=spec,
        metrics=_metrics(metrics),
        source=source or ModelSource(),
        precision=conversion.precision,
    )
    write_model_config(out_dir, config)
    log.info("wrote %s", out_dir)
    return out_dir


def convert_model_dir(
    src_dir: str | Path, out_dir: str | Path, conversion: Conversion, name: str | None = None
) -> Path:
    """An exported float32 model directory -> the same model at `conversion.precision` in
    `out_dir` (config.json copied, its precision and, if given, its name changed)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    config = read_model_config(src_dir)
    if config.precision != "fp32":
        raise ValueError(f"{src_dir} holds a {config.precision} model; convert from fp32")
    with _output_dir(out_dir), tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        fp32_path = Path(tmp) / "model.fp32.onnx"
        fp32_path.write_bytes((src_dir / MODEL_FILE).read_bytes())
        _write_graph(fp32_path, out_dir, conversion, config.preprocess)
    changes: dict[str, Any] = {"precision": conversion.precision}
    if name is not None:
        changes["name"] = name
    write_model_config(out_dir, config.model_copy(update=changes))
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
    name: str | None = None,
    version: str = "1",
    metrics: dict[str, Any] | None = None,
    conversion: Conversion = Conversion(),
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
        conversion=conversion,
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The `export` subcommand's arguments."""
    parser.description = (
        "Export a checkpoint to a model directory (model.onnx + config.json), or convert an "
        "exported float32 model directory to float16 or int8."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="our checkpoint, a timm file, a Hugging Face directory or a .npz (detected)",
    )
    source.add_argument(
        "--model-dir",
        metavar="DIR",
        help="an exported float32 model directory to convert (with --fp16 or --int8)",
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
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16", action="store_true", help="float16 weights and activations, for GPU serving"
    )
    precision.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantization for CPU serving (needs --calibration)",
    )
    add_dataclass_options(
        parser.add_argument_group("precision checks"),
        Conversion,
        Conversion(),
        skip=("precision", "int8_options"),
    )
    parser.add_argument("--name", help="model name in config.json (default: the --out folder)")
    parser.add_argument("--version", default="1", help="model version in config.json")


def _conversion(args: argparse.Namespace) -> Conversion:
    precision: Precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    conversion = Conversion(precision=precision, **given_values(args, Conversion))
    if not 0.0 <= conversion.min_agreement <= 1.0:
        raise ValueError(f"--min-agreement must be in [0, 1], not {conversion.min_agreement}")
    if precision == "int8" and conversion.calibration is None:
        raise ValueError("--int8 needs --calibration DATA: images of the training data")
    return conversion


def run(args: argparse.Namespace) -> int:
    """Run the export for parsed arguments; 0 on success, 1 if a check fails (nothing written),
    2 if the input cannot be used."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        conversion = _conversion(args)
        if args.model_dir is not None:
            if conversion.precision == "fp32":
                raise ValueError("--model-dir converts a model: give --fp16 or --int8")
            convert_model_dir(args.model_dir, args.out, conversion, name=args.name)
        else:
            export_checkpoint(
                args.checkpoint,
                args.out,
                arch=args.arch,
                labels=read_labels(args.labels) if args.labels else None,
                image_size=args.image_size,
                name=args.name,
                version=args.version,
                conversion=conversion,
            )
    except ExportCheckError as error:
        log.error("export check failed: %s", error)
        return 1
    except (OSError, ValueError) as error:
        log.error("export failed: %s", error)
        return 2
    return 0
