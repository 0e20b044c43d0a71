"""The two networks compared: the paper's ViT (small), and a small CNN with a CNN's priors
(locality, translation equivariance) for context. Both take grey (B, 1, H, W) in [-1, 1]."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from model.config import GlobalPool, ViTConfig, config_from_name
from model.vit import VisionTransformer

Arch = Literal["vit", "cnn"]


class SmallCNN(nn.Module):
    """Three stages of 3x3 convolutions with batch norm (width, 2 width, 4 width channels),
    two 2x2 max-pools, global average pooling, a linear head. About the ViT's compute per
    image at width 32 (30 M multiply-adds at 32 px)."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        w = width
        self.features = nn.Sequential(
            *conv(1, w), *conv(w, w), nn.MaxPool2d(2),
            *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *conv(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.width = width
        self.head = nn.Linear(4 * w, num_classes)

    def reset_head(self, num_classes: int) -> None:
        """A fresh zero-initialised head, as the ViT is fine-tuned."""
        self.head = nn.Linear(self.head.in_features, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def embed(self, x: Tensor) -> Tensor:
        """Pooled features (B, 4 width): what the head and a linear probe see."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def vit_config(
    image_size: int,
    patch_size: int,
    embed_dim: int,
    heads: int,
    depth: int,
    pool: GlobalPool = "token",
) -> ViTConfig:
    return config_from_name(
        f"vit_tiny_patch{patch_size}_{image_size}",
        embed_dim=embed_dim,
        num_heads=heads,
        depth=depth,
        in_chans=1,
        global_pool=pool,
    )


def build(arch: Arch, num_classes: int, options: dict[str, Any], seed: int) -> nn.Module:
    """A network with random weights drawn from `seed`."""
    torch.manual_seed(seed)
    if arch == "cnn":
        return SmallCNN(num_classes, options["cnn_width"])
    config = vit_config(
        options["image_size"],
        options["patch_size"],
        options["embed_dim"],
        options["num_heads"],
        options["depth"],
        options.get("vit_pool", "token"),  # networks saved before the option: the class token
    )
    return VisionTransformer(config.replace(num_classes=num_classes))


def embed(model: nn.Module, x: Tensor) -> Tensor:
    """What a linear probe reads: what the ViT's head reads (its class token or patch mean,
    after the final norm), the CNN's pooled features."""
    if isinstance(model, VisionTransformer):
        return model.pooled(model.forward_features(x)[0])
    if isinstance(model, SmallCNN):
        return model.embed(x)
    raise TypeError(f"no features for {type(model).__name__}")


def save_net(model: nn.Module, arch: Arch, options: dict[str, Any], path: Any) -> None:
    """A plain dict: which network, how it was built, its weights."""
    torch.save(
        {
            "arch": arch,
            "options": options,
            "num_classes": _classes(model),
            "state": model.state_dict(),
        },
        path,
    )


def load_net(path: Any) -> tuple[nn.Module, Arch]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build(saved["arch"], saved["num_classes"], saved["options"], seed=0)
    model.load_state_dict(saved["state"])
    return model, saved["arch"]


def _classes(model: nn.Module) -> int:
    head = model.head
    if not isinstance(head, nn.Linear):
        raise TypeError("a network without a linear head")
    return head.out_features
