"""Attention rollout (Abnar & Zuidema 2020), as the ViT paper used it for its attention maps.

Per layer: fuse heads, add the identity for the residual path, re-normalise each row:
A' = (A + I) / rowsum(A + I). Rollout = A'_L ... A'_2 A'_1 (first layer rightmost); the map is
the class token's row over the patch tokens. Only ONNX-exportable operations are used.

`cls_rollout_vector` is the one implementation of the mean-fusion map that the exported graph
and the experiments compute; `attention_rollout` and `cls_attention_rollout` are the readable
definitions it is tested against (and the paths for max/min head fusion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

HeadFusion = Literal["mean", "max", "min"]


def fuse_heads(attention: Tensor, head_fusion: HeadFusion = "mean") -> Tensor:
    """(B, heads, N, N) -> (B, N, N)."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', not {head_fusion!r}")


def residual_normalised(attention: Tensor) -> Tensor:
    """A' = (A + I) / rowsum(A + I) for fused attention (B, N, N); every row sums to 1."""
    n = attention.shape[-1]
    identity = torch.eye(n, dtype=attention.dtype, device=attention.device)
    with_residual = attention + identity
    return with_residual / with_residual.sum(dim=-1, keepdim=True)


def _to_grid(cls_row: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Class-token row (B, 1+N) -> map over the patches (B, gh, gw)."""
    return cls_row[:, 1:].reshape(cls_row.shape[0], grid_size[0], grid_size[1])


def attention_rollout(
    attentions: Sequence[Tensor], grid_size: tuple[int, int], head_fusion: HeadFusion = "mean"
) -> Tensor:
    """The rollout's class-token row over the patches, (B, gh, gw), by full matrix products."""
    rollout = residual_normalised(fuse_heads(attentions[0], head_fusion))
    for attention in attentions[1:]:
        rollout = residual_normalised(fuse_heads(attention, head_fusion)) @ rollout
    return _to_grid(rollout[:, 0], grid_size)


def cls_attention_rollout(
    attentions: Sequence[Tensor], grid_size: tuple[int, int], head_fusion: HeadFusion = "mean"
) -> Tensor:
    """The same map as `attention_rollout`, carried as one row vector from the last layer down:
    e_cls^T A'_L ... A'_1 costs L vector-matrix products instead of L matrix products."""
    row = residual_normalised(fuse_heads(attentions[-1], head_fusion))[:, :1]  # (B, 1, N)
    for attention in reversed(attentions[:-1]):
        row = row @ residual_normalised(fuse_heads(attention, head_fusion))
    return _to_grid(row[:, 0], grid_size)


def cls_rollout_vector(attentions: Sequence[Tensor], grid_size: tuple[int, int]) -> Tensor:
    """Per-layer probabilities (B, heads, N, N), first layer first -> the rollout's class-token
    row over the patches (B, gh, gw): mean head fusion, identity for the residual, not
    rescaled. Equal to `cls_attention_rollout(attentions, grid_size)`, rewritten for a cheap
    ONNX graph (same numbers up to float rounding):

    - each layer's fused, residual-normalised matrix A' = (mean_h P_h + I) / 2 is never built:
      softmax rows sum to 1, so every row of mean_h P_h + I sums to 2 and
      r A' = (r / 2) @ mean_h P_h + r / 2 = (r / 2h) @ [P_1; ...; P_h] + r / 2,
      one vector-matrix product over the stacked heads per layer;
    - the last layer contributes only its class-token row: P_h[0, :].
    """
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
