"""Shared fixtures: one thread (the CPUs are shared), random weights, a relative error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

torch.set_num_threads(1)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random, LayerNorm scales near 1, so no weight can go unloaded unseen
    (default inits leave biases zero and norms at one, which hides a missed key)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_scale = param.ndim == 1 and "norm" in name and name.endswith("weight")
            param.copy_(1 + 0.1 * noise if is_norm_scale else 0.05 * noise)
    return module.eval()


def _rel_error(ours: Tensor, theirs: Tensor) -> float:
    """max|ours - theirs| / max|theirs|, the issue's measure."""
    assert ours.shape == theirs.shape
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture
def randomize() -> Callable[..., nn.Module]:
    return _randomize


@pytest.fixture
def rel_error() -> Callable[[Tensor, Tensor], float]:
    return _rel_error
