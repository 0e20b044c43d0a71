"""Original google-research/vision_transformer .npz files, checked against timm's own loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from model import load_model

timm = pytest.importorskip("timm")

Randomize = Callable[..., Any]  # foreign models: typed loosely
RelError = Callable[[Tensor, Tensor], float]


def _official_arrays(model: Any) -> dict[str, Any]:
    """A timm ViT's weights under the official Flax names and layouts: Dense kernels (in, out),
    the patch conv HWIO, attention kernels with the heads kept apart."""
    s = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    dim = s["cls_token"].shape[-1]
    heads = model.blocks[0].attn.num_heads
    out = {
        "embedding/kernel": s["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": s["patch_embed.proj.bias"],
        "cls": s["cls_token"],
        "Transformer/posembed_input/pos_embedding": s["pos_embed"],
        "Transformer/encoder_norm/scale": s["norm.weight"],
        "Transformer/encoder_norm/bias": s["norm.bias"],
        "head/kernel": s["head.weight"].T,
        "head/bias": s["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        for flax, ours in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            out[p + f"{flax}/scale"] = s[b + f"{ours}.weight"]
            out[p + f"{flax}/bias"] = s[b + f"{ours}.bias"]
        weights = np.split(s[b + "attn.qkv.weight"], 3)
        biases = np.split(s[b + "attn.qkv.bias"], 3)
        for name, w, bias in zip(("query", "key", "value"), weights, biases, strict=True):
            out[mha + f"{name}/kernel"] = w.T.reshape(dim, heads, dim // heads)
            out[mha + f"{name}/bias"] = bias.reshape(heads, dim // heads)
        out[mha + "out/kernel"] = s[b + "attn.proj.weight"].T.reshape(heads, dim // heads, dim)
        out[mha + "out/bias"] = s[b + "attn.proj.bias"]
        for r in range(2):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = s[b + f"mlp.fc{r + 1}.weight"].T
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = s[b + f"mlp.fc{r + 1}.bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _timm_model(image_size: int) -> Any:
    return timm.create_model("vit_tiny_patch16_224", depth=2, img_size=image_size, num_classes=5)


@pytest.fixture
def npz_file(tmp_path: Path, randomize: Randomize) -> Path:
    path = tmp_path / "ViT-Ti_16.npz"
    np.savez(path, **_official_arrays(randomize(_timm_model(64))))
    return path


@pytest.mark.parametrize("image_size", [64, 96])
def test_npz_matches_timms_npz_loader(image_size: int, npz_file: Path, rel_error: RelError) -> None:
    theirs = _timm_model(image_size).eval()
    theirs.load_pretrained(str(npz_file))
    loaded = load_model(npz_file, image_size=image_size)  # heads read off the query kernel
    assert loaded.format == "npz"
    config = loaded.model.config
    assert (config.embed_dim, config.depth, config.num_heads, config.num_classes) == (192, 2, 3, 5)
    assert config.layer_norm_eps == 1e-6
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        assert rel_error(loaded.model(x), theirs(x)) <= 1e-5


def test_pre_logits_and_optimizer_prefix(
    tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    source = randomize(_timm_model(64))
    arrays = _official_arrays(source)
    generator = np.random.default_rng(0)
    pre_kernel = generator.normal(0, 0.05, (192, 32)).astype(np.float32)
    pre_bias = generator.normal(0, 0.05, (32,)).astype(np.float32)
    head_kernel = generator.normal(0, 0.05, (32, 5)).astype(np.float32)
    arrays.update({"pre_logits/kernel": pre_kernel, "pre_logits/bias": pre_bias})
    arrays["head/kernel"] = head_kernel
    path = tmp_path / "with_pre_logits.npz"
    np.savez(path, **{f"opt/target/{k}": v for k, v in arrays.items()})
    loaded = load_model(path)
    assert loaded.model.config.representation_size == 32
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cls = source.forward_features(x)[:, 0]
        pre = torch.tanh(cls @ torch.from_numpy(pre_kernel) + torch.from_numpy(pre_bias))
        expected = pre @ torch.from_numpy(head_kernel) + torch.from_numpy(arrays["head/bias"])
        assert rel_error(loaded.model(x), expected) <= 1e-5


def test_npz_of_another_shape_is_named(npz_file: Path) -> None:
    with pytest.raises(ValueError, match=r"'blocks\.0\.mlp\.fc1\.weight' has shape \(768, 192\)"):
        load_model(npz_file, mlp_ratio=2.0)
