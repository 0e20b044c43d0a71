"""The original google-research/vision_transformer `.npz` checkpoints (Flax parameter names).

Flax kernels are (in, out), so Dense kernels are transposed; the patch conv is HWIO; attention
kernels keep the heads apart: query/key/value (D, heads, head_dim), out (heads, head_dim, D).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from model.formats.resolve import Converted

NPZ_LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/(.+)$")
_PREFIX = "opt/target/"  # checkpoints saved with the optimizer state
_NORMS = {"scale": "weight", "bias": "bias"}
_DENSE = {"kernel": "weight", "bias": "bias"}


def convert_npz(tensors: dict[str, Tensor], config_json: object = None) -> Converted:
    """Our state dict from the official ViT .npz arrays."""
    arrays = {k.removeprefix(_PREFIX): v for k, v in tensors.items()}
    state: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    num_heads: int | None = None
    for key, value in arrays.items():
        match = _BLOCK.match(key)
        if match is None:
            state[_TOP.get(key, key)] = _top_value(key, value)
            continue
        layer, (part, _, param) = int(match[1]), match[2].rpartition("/")
        attention = part.removeprefix("MultiHeadDotProductAttention_1/")
        if attention in ("query", "key", "value"):
            num_heads = value.shape[1] if param == "kernel" else num_heads
            qkv.setdefault((layer, param), {})[attention] = _attention_in(value, param)
        elif attention == "out":
            state[f"blocks.{layer}.attn.proj.{_DENSE[param]}"] = _attention_out(value, param)
        else:
            state[_block_name(layer, part, param, key)] = _dense(value, param)
    for (layer, param), parts in sorted(qkv.items()):
        fused = [parts[p] for p in ("query", "key", "value") if p in parts]
        if len(fused) != 3:
            raise ValueError(f"encoderblock_{layer} lacks one of query/key/value {param}")
        state[f"blocks.{layer}.attn.qkv.{_DENSE[param]}"] = torch.cat(fused)
    stated: dict[str, object] = {"layer_norm_eps": NPZ_LAYER_NORM_EPS}
    if num_heads is not None:
        stated["num_heads"] = num_heads
    return Converted(state, stated)


def _attention_in(value: Tensor, param: str) -> Tensor:
    """query/key/value: kernel (D, heads, hd) -> weight (heads*hd, D); bias (heads, hd) -> flat."""
    if param == "kernel":
        return value.reshape(value.shape[0], -1).T
    return value.reshape(-1)


def _attention_out(value: Tensor, param: str) -> Tensor:
    """out: kernel (heads, hd, D) -> weight (D, heads*hd); bias (D,) as is."""
    if param == "kernel":
        return value.reshape(-1, value.shape[-1]).T
    return value


def _dense(value: Tensor, param: str) -> Tensor:
    return value.T if param == "kernel" else value


_BLOCK_PARTS = {
    "LayerNorm_0": "norm1",
    "LayerNorm_2": "norm2",
    "MlpBlock_3/Dense_0": "mlp.fc1",
    "MlpBlock_3/Dense_1": "mlp.fc2",
}


def _block_name(layer: int, part: str, param: str, key: str) -> str:
    module = _BLOCK_PARTS.get(part)
    names = _NORMS if part.startswith("LayerNorm") else _DENSE
    if module is None or param not in names:
        return key  # left as is: the fit check reports it as unexpected
    return f"blocks.{layer}.{module}.{names[param]}"


_TOP = {
    "embedding/kernel": "patch_embed.proj.weight",
    "embedding/bias": "patch_embed.proj.bias",
    "cls": "cls_token",
    "Transformer/posembed_input/pos_embedding": "pos_embed",
    "Transformer/encoder_norm/scale": "norm.weight",
    "Transformer/encoder_norm/bias": "norm.bias",
    "pre_logits/kernel": "pre_logits.0.weight",
    "pre_logits/bias": "pre_logits.0.bias",
    "head/kernel": "head.weight",
    "head/bias": "head.bias",
}


def _top_value(key: str, value: Tensor) -> Tensor:
    if key == "embedding/kernel":
        return value.permute(3, 2, 0, 1)  # HWIO -> OIHW
    if key.endswith("/kernel"):
        return value.T
    return value
