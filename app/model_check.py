"""Whether a model directory can be served: its `config.json` against itself, its graph against
its config, and a run's outputs against both. Each failure is a `ModelError` saying why.

`app.session.load_model` runs the static checks, `OnnxModel.warm_up` the run-time one; a model
repository can call the same two per model version and log and skip what fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from app.model_config import CONFIG_FILE, INPUT_NAME, OUTPUT_NAMES, ModelConfig, read_model_config

FLOAT32 = "tensor(float)"

Dim = int | str | None  # onnxruntime's shape entries: a size, a symbolic name, or unknown


class ModelError(ValueError):
    """A model directory that cannot be served, and why."""

    def __init__(self, model_dir: Path, reason: str) -> None:
        super().__init__(f"model directory {model_dir}: {reason}")
        self.model_dir = model_dir
        self.reason = reason


def load_config(model_dir: Path) -> ModelConfig:
    """`config.json`, parsed and consistent with itself, or a ModelError naming the problem."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelError(model_dir, f"no {CONFIG_FILE}")
    try:
        config = read_model_config(model_dir)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ModelError(model_dir, f"{CONFIG_FILE} does not fit the schema: {problems}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(model_dir, f"{CONFIG_FILE} cannot be read: {exc}") from exc
    check_config(model_dir, config)
    return config


def check_config(model_dir: Path, config: ModelConfig) -> None:
    """The fields of config.json that must agree with each other."""
    height, width = config.image_size
    patch = config.patch_size
    if patch <= 0 or height % patch or width % patch:
        raise ModelError(
            model_dir, f"image_size {config.image_size} is not a multiple of patch_size {patch}"
        )
    if tuple(config.grid) != (height // patch, width // patch):
        raise ModelError(
            model_dir,
            f"grid {list(config.grid)} does not match image_size {list(config.image_size)} / "
            f"patch_size {patch} = {[height // patch, width // patch]}",
        )
    if tuple(config.preprocess.crop) != tuple(config.image_size):
        raise ModelError(
            model_dir,
            f"preprocess.crop {list(config.preprocess.crop)} is not the model's image_size "
            f"{list(config.image_size)}",
        )
    if min(config.preprocess.std) <= 0:
        raise ModelError(model_dir, f"preprocess.std {config.preprocess.std} must be positive")


def check_graph(
    model_dir: Path,
    config: ModelConfig,
    inputs: dict[str, tuple[Sequence[Dim], str]],
    outputs: dict[str, Sequence[Dim]],
    max_batch_size: int,
) -> None:
    """The graph's input and outputs (name -> shape, and the input's type) against the config:
    3 x crop pixels in, labels-wide logits and a grid-shaped attention map out, any batch."""
    if INPUT_NAME not in inputs or not set(OUTPUT_NAMES) <= set(outputs):
        raise ModelError(
            model_dir,
            f"model.onnx must take {INPUT_NAME!r} and give {list(OUTPUT_NAMES)}; it takes "
            f"{sorted(inputs)} and gives {sorted(outputs)}",
        )
    shape, dtype = inputs[INPUT_NAME]
    if dtype != FLOAT32:
        raise ModelError(model_dir, f"{INPUT_NAME} is {dtype}, not float32")
    _check_shape(model_dir, INPUT_NAME, shape, (3, *config.preprocess.crop), "3 x preprocess.crop")
    _check_shape(model_dir, "logits", outputs["logits"], (len(config.labels),), "the labels")
    _check_shape(model_dir, "attention", outputs["attention"], tuple(config.grid), "the grid")
    batch = shape[0]
    if isinstance(batch, int) and not batch == max_batch_size == 1:
        raise ModelError(
            model_dir,
            f"{INPUT_NAME} has a fixed batch size of {batch}; batching needs a dynamic batch axis",
        )


def check_outputs(
    model_dir: Path, config: ModelConfig, batch_size: int, logits: np.ndarray, attention: np.ndarray
) -> None:
    """A run's outputs against the config (where the graph's shapes were symbolic)."""
    want_logits = (batch_size, len(config.labels))
    if logits.shape != want_logits:
        raise ModelError(
            model_dir,
            f"logits are {list(logits.shape)} for a batch of {batch_size}, but config.json has "
            f"{len(config.labels)} labels (expected {list(want_logits)})",
        )
    want_attention = (batch_size, *config.grid)
    if attention.shape != want_attention:
        raise ModelError(
            model_dir,
            f"attention is {list(attention.shape)} for a batch of {batch_size}, but config.json "
            f"has grid {list(config.grid)} (expected {list(want_attention)})",
        )


def _check_shape(
    model_dir: Path, name: str, shape: Sequence[Dim], want: tuple[int, ...], what: str
) -> None:
    """`shape` is (batch, *want), where each fixed dimension must equal want's."""
    if len(shape) != 1 + len(want):
        raise ModelError(
            model_dir, f"{name} has shape {list(shape)}, expected (batch, {list(want)}) from {what}"
        )
    for dim, wanted in zip(shape[1:], want, strict=True):
        if isinstance(dim, int) and dim != wanted:
            raise ModelError(
                model_dir,
                f"{name} has shape {list(shape)}, but config.json says {list(want)} ({what})",
            )
