"""The seam between training and serving: the `config.json` of a model directory.

Export writes it, the service reads it; both use this one schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]


class PreprocessConfig(BaseModel):
    """RGB -> resize the shorter side -> centre-crop -> [0, 1] -> (x - mean) / std."""

    model_config = ConfigDict(extra="forbid")

    resize: int = Field(gt=0, description="shorter side after resizing, in pixels")
    crop: tuple[int, int] = Field(description="centre crop (height, width)")
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


class ModelMetrics(BaseModel):
    top1: float | None = None
    top5: float | None = None
    dataset: str | None = None


class ModelSource(BaseModel):
    checkpoint: str | None = None
    format: str | None = None


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


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """Parse and validate `<model_dir>/config.json`."""
    return ModelConfig.model_validate_json((Path(model_dir) / CONFIG_FILE).read_text())


def write_model_config(model_dir: str | Path, config: ModelConfig) -> Path:
    """Write `<model_dir>/config.json`, indented for people to read."""
    path = Path(model_dir) / CONFIG_FILE
    path.write_text(config.model_dump_json(indent=2) + "\n")
    return path
