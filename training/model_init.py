"""The model a run starts from: a fresh variant (pretrain) or a loaded checkpoint (finetune)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.checkpoint import is_native, model_from_native
from model.config import ViTConfig, config_from_name
from model.pos_embed import resample_pos_embed
from model.vit import VisionTransformer
from training.config import ModelSpec

# Fields a fine-tune may change on a loaded model; the rest is the checkpoint's architecture.
FINETUNE_FIELDS = ("image_size", "drop_rate", "drop_path_rate")


def variant_config(spec: ModelSpec) -> ViTConfig:
    """The `ViTConfig` a spec names (head size and labels set later, from the data)."""
    return config_from_name(spec.arch, **spec.overrides())


def fresh_model(spec: ModelSpec, labels: list[str]) -> VisionTransformer:
    config = variant_config(spec).replace(num_classes=len(labels), labels=list(labels))
    return VisionTransformer(config)


def load_pretrained(path: str | Path) -> VisionTransformer:
    """Any checkpoint model/ can read: ours, timm, Hugging Face or .npz."""
    try:
        from model.load import load_model
    except ImportError:  # model/load.py not there yet: our own format only
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not (isinstance(state, dict) and is_native(state)):
            raise ValueError(f"{path}: not a vitserve checkpoint") from None
        return model_from_native(state)
    return load_model(path).model


def for_finetuning(
    base: VisionTransformer, spec: ModelSpec, labels: list[str]
) -> VisionTransformer:
    """`base`'s weights under a fresh zero-initialised head for `labels`, with position
    embeddings resampled to `spec.image_size` if that differs."""
    given = spec.overrides()
    for key in ("depth", "embed_dim", "num_heads", "mlp_ratio"):
        if key in given and given[key] != getattr(base.config, key):
            raise ValueError(
                f"finetune keeps the checkpoint's {key} ({getattr(base.config, key)}); "
                f"cannot change it to {given[key]}"
            )
    changes: dict[str, Any] = {k: given[k] for k in FINETUNE_FIELDS if k in given}
    config = base.config.replace(**changes, num_classes=len(labels), labels=list(labels))
    model = VisionTransformer(config)
    weights = {k: v for k, v in base.state_dict().items() if not k.startswith("head.")}
    weights["pos_embed"] = resample_pos_embed(
        weights["pos_embed"], config.grid_size, base.config.grid_size
    )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.reset_head()
    return model
