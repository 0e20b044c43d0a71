"""The model a run starts from: a fresh variant (pretrain) or a loaded checkpoint (finetune)."""

from __future__ import annotations

from pathlib import Path

from model.config import ViTConfig, config_from_name
from model.load import load_model
from model.vit import VisionTransformer
from training.config import DEFAULT_ARCH, ModelSpec


def variant_config(spec: ModelSpec) -> ViTConfig:
    """The `ViTConfig` a spec names (head size and labels set later, from the data)."""
    return config_from_name(spec.arch or DEFAULT_ARCH, **spec.overrides())


def fresh_model(spec: ModelSpec, labels: list[str]) -> VisionTransformer:
    config = variant_config(spec).replace(num_classes=len(labels), labels=list(labels))
    return VisionTransformer(config)


def load_pretrained(path: str | Path, spec: ModelSpec | None = None) -> VisionTransformer:
    """Any checkpoint model/ reads (ours, timm, Hugging Face, .npz), with the spec's changes:
    another `image_size` resamples the position embeddings, drop rates apply as given."""
    spec = spec or ModelSpec()
    return load_model(path, arch=spec.arch, **spec.overrides()).model


def with_fresh_head(model: VisionTransformer, labels: list[str]) -> VisionTransformer:
    """A zero-initialised head for `labels`, as the paper fine-tunes."""
    model.reset_head(len(labels))
    model.config = model.config.replace(labels=list(labels))
    return model
