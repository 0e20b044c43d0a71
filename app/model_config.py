"""The seam between training and serving: the model-directory contract.

A model directory holds `model.onnx` (input `pixel_values`, outputs `logits` and `attention`)
and its `config.json`. Export writes both, the service reads both; the file names, tensor names,
preprocessing defaults and the config schema are defined here once and imported by each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
# The graph's interface: (B, 3, H, W) float32 in; logits (B, C) and attention (B, gh, gw) out.
INPUT_NAME = "pixel_values"  # preprocessed images
LOGITS = "logits"
ATTENTION = "attention"  # the attention rollout of the class token over the patches
OUTPUT_NAMES = (LOGITS, ATTENTION)

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]

# Preprocessing defaults: scale to [-1, 1], bicubic resampling.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
DEFAULT_INTERPOLATION: Interpolation = "bicubic"


class PreprocessConfig(BaseModel):
    """RGB -> resize the shorter side -> centre-crop -> [0, 1] -> (x - mean) / std."""

    model_config = ConfigDict(extra="forbid")

    resize: int = Field(gt=0, description="shorter side after resizing, in pixels")
    crop: tuple[int, int] = Field(description="centre crop (height, width)")
    interpolation: Interpolation = DEFAULT_INTERPOLATION
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD


class ModelMetrics(BaseModel):
    top1: float | None = None
    top5: float | None = None
    dataset: str | None = None


class ModelSource(BaseModel):
    checkpoint: str | None = None
    format: str | None = None


class ServingConfig(BaseModel):
    """Per-model overrides of the service's batching settings (absent: the settings' values)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(default=None, ge=1, description="images per session run")
    max_wait_ms: float | None = Field(
        default=None, ge=0, description="wait after a batch's first image"
    )
    max_queue: int | None = Field(
        default=None, ge=1, description="images admitted and not computing"
    )


class ModelConfig(BaseModel):
    """Everything the service needs to know about `model.onnx`."""

    name: str
    version: str = "1"
    architecture: str
    labels: list[str] = Field(min_length=1)
    image_size: tuple[int, int]
    patch_size: int
    grid: tuple[int, int]
    preprocess: PreprocessConfig
    metrics: ModelMetrics = Field(default_factory=ModelMetrics)
    source: ModelSource = Field(default_factory=ModelSource)
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    serving: ServingConfig = Field(default_factory=ServingConfig)


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """Parse and validate `<model_dir>/config.json`."""
    return ModelConfig.model_validate_json((Path(model_dir) / CONFIG_FILE).read_text())


def write_model_config(model_dir: str | Path, config: ModelConfig) -> Path:
    """Write `<model_dir>/config.json`, indented for people to read."""
    path = Path(model_dir) / CONFIG_FILE
    path.write_text(config.model_dump_json(indent=2) + "\n")
    return path
