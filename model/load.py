"""One entry point for every checkpoint we read: `load_model(path)`.

The format is told from the file's keys (model/formats/detect.py), converted to our parameter
names by one small module per format, and fitted to the model (model/formats/fit.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from model.config import ViTConfig, parse_variant
from model.formats.detect import Format, detect_format
from model.formats.fit import load_fitted
from model.formats.huggingface import convert_huggingface
from model.formats.npz import convert_npz
from model.formats.read import read_checkpoint
from model.formats.resolve import Converted, source_config
from model.formats.timm import convert_timm
from model.vit import VisionTransformer

_CONVERTERS: dict[str, Callable[[dict[str, Tensor], dict[str, Any] | None], Converted]] = {
    "timm": convert_timm,
    "huggingface": convert_huggingface,
    "npz": convert_npz,
}
# The original code and timm's .npz loader resample position embeddings bilinearly; timm's own
# checkpoints bicubic with antialiasing. Each format keeps its source's numbers.
_RESAMPLING: dict[str, tuple[str, bool]] = {"npz": ("bilinear", False)}


@dataclass
class LoadedModel:
    """A model read from a checkpoint, in eval mode, and what the file said about it."""

    model: VisionTransformer
    format: Format  # "native" | "timm" | "huggingface" | "npz"
    labels: list[str]  # class names from the file, [] when unknown or the head is new
    source: Path


def load_model(
    source: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    **overrides: Any,
) -> LoadedModel:
    """Load a ViT from a local checkpoint of any supported format.

    source: one of our checkpoints, a timm state dict (.pth/.pt/.bin/.safetensors), a Hugging
        Face `save_pretrained` directory or its weights file, or an original .npz.
    arch: variant name, e.g. "vit_base_patch16_224"; needed only when the file says neither
        its architecture (our checkpoints, config.json) nor shapes of a named size.
    num_classes: a different number gets a fresh zero-initialised head.
    image_size: a different resolution gets resampled position embeddings.
    overrides: any other ViTConfig field, e.g. drop_path_rate=0.1.
    """
    raw = read_checkpoint(source)
    where = str(raw.path)
    fmt, tensors = detect_format(raw.content, where)
    if fmt == "native":
        stored = ViTConfig.from_dict(raw.content["model_config"])
        state = tensors
    else:
        converted = _CONVERTERS[fmt](tensors, raw.config_json)
        stored = source_config(converted, arch, where)
        state = converted.state
    config = _target_config(stored, num_classes, image_size, overrides)
    model = VisionTransformer(config)
    interpolation, antialias = _RESAMPLING.get(fmt, ("bicubic", True))
    fresh_head = config.num_classes != stored.num_classes
    load_fitted(model, state, fresh_head, where, interpolation, antialias)
    return LoadedModel(model.eval(), fmt, list(config.labels), raw.path)


def _target_config(
    stored: ViTConfig, num_classes: int | None, image_size: int | None, overrides: dict[str, Any]
) -> ViTConfig:
    """The stored config with the caller's changes; labels go with a replaced head."""
    changes = dict(overrides)
    if num_classes is not None and num_classes != stored.num_classes:
        changes["num_classes"] = num_classes
        changes.setdefault("labels", [])
    if image_size is not None and image_size != stored.image_size:
        changes["image_size"] = image_size
        changes.setdefault("name", _renamed(stored.name, image_size))
    known = {f.name for f in dataclasses.fields(ViTConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown ViTConfig fields: {', '.join(unknown)}")
    return stored.replace(**changes)


def _renamed(name: str, image_size: int) -> str:
    """vit_base_patch16_224 at 384 is vit_base_patch16_384; other names stay."""
    try:
        parse_variant(name)
    except ValueError:
        return name
    return f"{name.rsplit('_', 1)[0]}_{image_size}"
