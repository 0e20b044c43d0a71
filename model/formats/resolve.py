"""From a converted state dict (our names) to the config of the model it holds.

The architecture comes from the file where it says so (a config beside the weights), else from
the variant name `arch`, else from the tensor shapes when they match one of the named sizes.
What the head looks like (classes, pre-logits, qkv bias) always comes from the tensors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from model.config import VARIANT_SIZES, ViTConfig, parse_variant

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
# Fields the tensors settle whatever a name or config says.
_HEAD_FIELDS = ("num_classes", "representation_size", "qkv_bias")


@dataclass
class Converted:
    """A foreign checkpoint in our (timm) parameter names, with what its file states."""

    state: dict[str, Tensor]
    stated: dict[str, Any] = field(default_factory=dict)  # ViTConfig fields the file gives
    arch: str | None = None  # a variant name the file gives, if any


def shape_fields(state: dict[str, Tensor]) -> dict[str, Any]:
    """The ViTConfig fields that the tensor shapes show (heads never show; see `source_config`)."""
    fields: dict[str, Any] = {}
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 4:
        fields.update(embed_dim=proj.shape[0], in_chans=proj.shape[1], patch_size=proj.shape[-1])
    blocks = {int(m[1]) for key in state if (m := _BLOCK.match(key))}
    if blocks:
        fields["depth"] = max(blocks) + 1
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and "embed_dim" in fields:
        fields["mlp_ratio"] = fc1.shape[0] / fields["embed_dim"]
    if "blocks.0.attn.qkv.weight" in state:
        fields["qkv_bias"] = "blocks.0.attn.qkv.bias" in state
    head = state.get("head.weight")
    fields["num_classes"] = head.shape[0] if head is not None else 0
    pre_logits = state.get("pre_logits.0.weight")
    fields["representation_size"] = pre_logits.shape[0] if pre_logits is not None else None
    pos = state.get("pos_embed")
    if pos is not None and "patch_size" in fields:
        side = math.isqrt(pos.shape[1] - 1)
        if side * side == pos.shape[1] - 1:
            fields["image_size"] = side * fields["patch_size"]
    return fields


def match_size(fields: dict[str, Any]) -> str | None:
    """The named size (tiny ... huge) whose width, depth and MLP ratio these fields have."""
    for size, dims in VARIANT_SIZES.items():
        if all(fields.get(k) == v for k, v in dims.items() if k != "num_heads"):
            return size
    return None


def source_config(converted: Converted, arch: str | None, where: str) -> ViTConfig:
    """The config of the model stored in `converted`: file's config > `arch` > shapes."""
    shapes = shape_fields(converted.state)
    arch = arch or converted.arch
    values: dict[str, Any] = {}
    if arch is not None:
        values.update(parse_variant(arch))
    else:
        known = {**shapes, **converted.stated}
        size = match_size(known)
        if size is None and "num_heads" not in known:
            raise ValueError(
                f"cannot tell the architecture of {where}: width {known.get('embed_dim')}, depth "
                f"{known.get('depth')} is no named size and the number of heads is not stored; "
                "give arch=, e.g. arch='vit_base_patch16_224'"
            )
        values.update(shapes)
        if size is not None:
            values.update(VARIANT_SIZES[size])
            patch, res = known.get("patch_size"), known.get("image_size")
            values["name"] = f"vit_{size}_patch{patch}_{res}" if patch and res else f"vit_{size}"
        else:
            values["name"] = "vit_custom"
    values.update(converted.stated)
    values.update({k: shapes[k] for k in _HEAD_FIELDS if k in shapes})
    if len(values.get("labels", [])) != values.get("num_classes"):
        values["labels"] = []  # e.g. transformers' placeholder labels on a model without a head
    try:
        return ViTConfig(**values)
    except ValueError as error:
        raise ValueError(f"{where} does not describe a valid ViT: {error}") from error
