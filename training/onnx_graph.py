"""The modules that become `model.onnx`: logits plus the class-token attention-rollout map.

`ViTWithAttention` is what export traces. Its rollout is `model.rollout.cls_attention_rollout`
rewritten for a cheap graph (same numbers up to float rounding):

- each layer's fused, residual-normalised matrix A' = (mean_h P_h + I) / 2 is never built:
  softmax rows sum to 1, so every row of mean_h P_h + I sums to 2 and
  r A' = (r / 2) @ mean_h P_h + r / 2 = (r / 2h) @ [P_1; ...; P_h] + r / 2,
  one vector-matrix product over the stacked heads per layer;
- the last layer contributes only its class-token row: P_h[0, :].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.vit import VisionTransformer


def cls_rollout_vector(attentions: Sequence[Tensor], grid_size: tuple[int, int]) -> Tensor:
    """Per-layer probabilities (B, heads, N, N), first layer first -> the rollout's class-token
    row over the patches (B, gh, gw): mean head fusion, identity for the residual, not
    rescaled. Equal to `cls_attention_rollout(attentions, grid_size)`."""
    last = attentions[-1]
    B, heads, N, _ = last.shape
    # Last layer: only the class token's row, (mean_h P_h[0] + e_0) / 2.
    row = last[:, :, 0, :].mean(dim=1, keepdim=True)  # (B, 1, N)
    e_cls = torch.zeros(1, 1, N, dtype=last.dtype, device=last.device)
    e_cls[..., 0] = 1.0
    row = (row + e_cls) * 0.5
    for attention in reversed(attentions[:-1]):
        stacked = attention.reshape(B, heads * N, N)  # (B, heads*N, N): the heads' rows stacked
        half = row * 0.5  # (B, 1, N)
        row = (half * (1.0 / heads)).repeat(1, 1, heads) @ stacked + half  # (B, 1, N)
    return row[:, 0, 1:].reshape(B, grid_size[0], grid_size[1])


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
