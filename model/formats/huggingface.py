"""Hugging Face `ViTForImageClassification` / `ViTModel`, in the transformers 4.x names
(`encoder.layer.N.attention.attention.query`) and the 5.x names (`layers.N.attention.q_proj`)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from model.formats.resolve import Converted

# transformers' ViTConfig defaults: save_pretrained may leave out values equal to them.
_HF_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    image_size=224,
    patch_size=16,
    num_channels=3,
    qkv_bias=True,
    pooler_act="tanh",
)
HF_LAYER_NORM_EPS = _HF_DEFAULTS["layer_norm_eps"]

_LAYER = r"^(?:encoder\.layer|layers)\.(\d+)\."
_RENAMES = [
    (re.compile(r"^embeddings\.cls_token$"), "cls_token"),
    (re.compile(r"^embeddings\.position_embeddings$"), "pos_embed"),
    (re.compile(r"^embeddings\.patch_embeddings\.projection\."), "patch_embed.proj."),
    (re.compile(_LAYER + r"layernorm_before\."), r"blocks.\1.norm1."),
    (re.compile(_LAYER + r"layernorm_after\."), r"blocks.\1.norm2."),
    (re.compile(_LAYER + r"attention\.(?:output\.dense|o_proj)\."), r"blocks.\1.attn.proj."),
    (re.compile(_LAYER + r"(?:intermediate\.dense|mlp\.fc1)\."), r"blocks.\1.mlp.fc1."),
    (re.compile(_LAYER + r"(?:output\.dense|mlp\.fc2)\."), r"blocks.\1.mlp.fc2."),
    (re.compile(r"^layernorm\."), "norm."),
    (re.compile(r"^pooler\.dense\."), "pre_logits.0."),  # Dense + tanh on [CLS], as ours
    (re.compile(r"^classifier\."), "head."),
]
# Separate q, k, v projections, fused into timm's qkv in this order.
_QKV = re.compile(
    _LAYER + r"attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(weight|bias)$"
)
_QKV_ORDER = ("q", "k", "v")
# Only ViTForMaskedImageModeling uses it; classification never does.
_IGNORED = re.compile(r"^embeddings\.mask_token$")


def convert_huggingface(
    tensors: dict[str, Tensor], config_json: dict[str, Any] | None
) -> Converted:
    """Our state dict from a Hugging Face one, and the fields its config.json states."""
    state: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in tensors.items():
        name = key.removeprefix("vit.")
        if _IGNORED.match(name):
            continue
        if match := _QKV.match(name):
            layer, long_name, short_name, param = match.groups()
            qkv.setdefault((int(layer), param), {})[(long_name or short_name)[0]] = value
            continue
        for pattern, replacement in _RENAMES:
            name, count = pattern.subn(replacement, name)
            if count:
                break
        state[name] = value
    for (layer, param), parts in sorted(qkv.items()):
        missing = [p for p in _QKV_ORDER if p not in parts]
        if missing:
            raise ValueError(f"layer {layer} has no {'/'.join(missing)} projection {param}")
        state[f"blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[p] for p in _QKV_ORDER])
    # save_pretrained always writes model_type; a config.json without it is someone else's.
    if config_json is not None and "model_type" in config_json:
        stated = config_fields(config_json)
    else:
        stated = {"layer_norm_eps": HF_LAYER_NORM_EPS}
    return Converted(state, stated)


def config_fields(config_json: dict[str, Any]) -> dict[str, Any]:
    """The ViTConfig fields of a transformers ViT config.json."""
    c = {**_HF_DEFAULTS, **config_json}
    if c.get("model_type", "vit") != "vit":
        raise ValueError(f"config.json is for model_type {c['model_type']!r}, not 'vit'")
    for key in ("hidden_act", "pooler_act"):
        if c[key] != _HF_DEFAULTS[key]:
            raise ValueError(f"config.json {key} {c[key]!r} is not supported (exact GELU/tanh)")
    fields: dict[str, Any] = dict(
        embed_dim=c["hidden_size"],
        depth=c["num_hidden_layers"],
        num_heads=c["num_attention_heads"],
        mlp_ratio=c["intermediate_size"] / c["hidden_size"],
        image_size=_side(c["image_size"], "image_size"),
        patch_size=_side(c["patch_size"], "patch_size"),
        in_chans=c["num_channels"],
        qkv_bias=c["qkv_bias"],
        layer_norm_eps=c["layer_norm_eps"],
    )
    id2label = c.get("id2label")
    if isinstance(id2label, dict) and id2label:
        by_id = {int(i): str(label) for i, label in id2label.items()}
        fields["labels"] = [by_id.get(i, str(i)) for i in range(max(by_id) + 1)]
    return fields


def _side(value: int | list[int], name: str) -> int:
    """Our models are square: an int, or a pair of equal ints."""
    if isinstance(value, int):
        return value
    if len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    raise ValueError(f"config.json {name} {value} is not square")
