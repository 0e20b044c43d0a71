"""Resampling learned position embeddings to another patch grid (the paper's 2-D interpolation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def resample_pos_embed(
    pos_embed: Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> Tensor:
    """(1, prefix + gh*gw, D) -> (1, prefix + new_gh*new_gw, D); prefix (class) slots kept as is.

    `old_grid` defaults to a square grid. Interpolation is bicubic with antialiasing, as timm
    resamples, so both libraries give the same numbers.
    """
    prefix, grid_tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if old_grid is None:
        side = math.isqrt(grid_tokens.shape[1])
        if side * side != grid_tokens.shape[1]:
            raise ValueError(
                f"position embedding with {grid_tokens.shape[1]} patch tokens is not a square "
                "grid; give old_grid"
            )
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    dtype = pos_embed.dtype
    grid = grid_tokens.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(
        grid, size=new_grid, mode=interpolation, antialias=antialias, align_corners=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(dtype)
    return grid if num_prefix_tokens == 0 else torch.cat((prefix, grid), dim=1)
