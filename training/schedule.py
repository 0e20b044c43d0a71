"""The learning rate as a pure function of the optimizer step: linear warm-up, cosine decay."""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Rate for optimizer step `step` (0-based): rises linearly to `peak` over `warmup_steps`,
    then follows half a cosine down to `min_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (peak - min_lr) * (1.0 + math.cos(math.pi * progress))
