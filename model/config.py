"""The ViT architecture as data: a typed config, and the timm-style variant names that make one."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# Widths, depths, heads and MLP sizes of the paper's Table 1; Ti and S from the official code.
VARIANT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
}

_NAME = re.compile(r"^vit_(?P<size>tiny|small|base|large|huge)_patch(?P<patch>\d+)_(?P<res>\d+)$")


# What the head reads: the class token (the paper's) or the mean of the patch tokens.
GlobalPool = Literal["token", "avg"]


@dataclass
class ViTConfig:
    """Everything needed to build a VisionTransformer; `to_dict()` alone rebuilds the model."""

    name: str = "vit_tiny_patch16_224"  # the variant this config started from
    image_size: int = 224  # square input side, in pixels
    patch_size: int = 16  # conv kernel = stride
    in_chans: int = 3
    num_classes: int = 1000  # 0 means no head (features only)
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0  # MLP hidden size = embed_dim * mlp_ratio
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6  # timm 1e-6, Hugging Face 1e-12
    global_pool: GlobalPool = "token"  # class token (paper) or mean of patches
    representation_size: int | None = None  # "pre_logits" Dense+tanh of the original code
    drop_rate: float = 0.0  # dropout after embeddings, in MLPs and before the head
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this in the last block
    labels: list[str] = field(default_factory=list)  # class names, if known

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.image_size < 1:
            raise ValueError(
                f"image_size {self.image_size} and patch_size {self.patch_size} must be positive"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', not {self.global_pool!r}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per side: (rows, columns)."""
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid_size
        return rows * cols

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViTConfig:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **overrides: Any) -> ViTConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)


def parse_variant(name: str) -> dict[str, Any]:
    """`vit_{tiny,small,base,large,huge}_patch{P}_{RES}` -> the fields it implies."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(
            f"unknown architecture {name!r}: expected vit_{{tiny,small,base,large,huge}}"
            "_patch{P}_{RES}, e.g. vit_base_patch16_224 or vit_tiny_patch4_32"
        )
    return dict(
        name=name,
        patch_size=int(match["patch"]),
        image_size=int(match["res"]),
        **VARIANT_SIZES[match["size"]],
    )


def config_from_name(name: str, **overrides: Any) -> ViTConfig:
    """The config of a named variant, with any field overridden (e.g. depth=6, num_classes=10)."""
    values = parse_variant(name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ViTConfig(**values)
