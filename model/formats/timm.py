"""timm `VisionTransformer` state dicts: already our names, fused qkv."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from model.config import parse_variant
from model.formats.resolve import Converted

TIMM_LAYER_NORM_EPS = 1e-6


def convert_timm(tensors: dict[str, Tensor], config_json: dict[str, Any] | None) -> Converted:
    """Our state dict from a timm one (wrappers and prefixes already removed by `unwrap`)."""
    # Older timm kept the representation layer as `pre_logits.fc`; ours is a Sequential.
    state = {k.replace("pre_logits.fc.", "pre_logits.0."): v for k, v in tensors.items()}
    return Converted(state, {"layer_norm_eps": TIMM_LAYER_NORM_EPS}, _architecture(config_json))


def _architecture(config_json: dict[str, Any] | None) -> str | None:
    """The variant of a timm hub directory's config.json ("vit_base_patch16_224.augreg_in1k"),
    if it is one of our names."""
    name = (config_json or {}).get("architecture")
    if not isinstance(name, str):
        return None
    name = name.split(".")[0]  # drop the pretrained tag
    try:
        parse_variant(name)
    except ValueError:
        return None
    return name
