"""The modules that become `model.onnx`: logits plus the class-token attention-rollout map.

`ViTWithAttention` is what export traces; its rollout is `model.rollout.cls_rollout_vector`,
the mean-fusion map rewritten for a cheap graph (its docstring says how).
"""

from __future__ import annotations

from torch import Tensor, nn

from model.rollout import cls_rollout_vector
from model.vit import VisionTransformer


class ViTWithAttention(nn.Module):
    """`pixel_values` (B, 3, H, W) -> (`logits` (B, classes), `attention` (B, gh, gw))."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.model = model
        self.grid_size = model.config.grid_size

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        logits, attentions = self.model.forward_with_attention(pixel_values)
        return logits, cls_rollout_vector(attentions, self.grid_size)


class ViTLogits(nn.Module):
    """`pixel_values` -> `logits` alone, by the fused attention path (the cost baseline)."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.model(pixel_values)
