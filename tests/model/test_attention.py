"""Fused and explicit attention agree; attention rollout matches its definition."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from model import VisionTransformer, attention_rollout, cls_attention_rollout, config_from_name
from model.rollout import cls_rollout_vector, residual_normalised


def _model(randomize: Callable[..., nn.Module]) -> VisionTransformer:
    model = VisionTransformer(config_from_name("vit_tiny_patch8_48", depth=3, num_classes=7))
    randomize(model)
    return model


def test_fused_and_explicit_attention_give_the_same_logits(
    randomize: Callable[..., nn.Module], rel_error: Callable[[Tensor, Tensor], float]
) -> None:
    model = _model(randomize)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        fused = model(x)
        explicit, attentions = model.forward_with_attention(x)
    assert rel_error(explicit, fused) <= 1e-5
    assert len(attentions) == 3
    assert attentions[0].shape == (2, 3, 37, 37)  # (B, heads, 1+N, 1+N)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(2, 3, 37))


def _reference_rollout(attentions: list[Tensor], grid: tuple[int, int]) -> Tensor:
    """From the definition: per layer mean over heads, A' = (A + I) / rowsum, product with the
    first layer rightmost, CLS row over the patches. Rows are checked on the way."""
    rollout = None
    for attention in attentions:
        fused = attention.mean(dim=1)
        with_residual = fused + torch.eye(fused.shape[-1])
        normalised = with_residual / with_residual.sum(dim=-1, keepdim=True)
        rollout = normalised if rollout is None else normalised @ rollout
        ones = torch.ones(rollout.shape[:-1], dtype=rollout.dtype)
        torch.testing.assert_close(rollout.sum(dim=-1), ones)  # every intermediate row sums to 1
    assert rollout is not None
    return rollout[:, 0, 1:].reshape(rollout.shape[0], *grid)


def test_rollout_matches_the_definition(randomize: Callable[..., nn.Module]) -> None:
    model = _model(randomize)
    with torch.no_grad():
        _, attentions = model.forward_with_attention(torch.randn(2, 3, 48, 48))
    grid = model.config.grid_size
    for attention in attentions:
        rows = residual_normalised(attention.mean(dim=1)).sum(dim=-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))
    expected = _reference_rollout(attentions, grid)
    full = attention_rollout(attentions, grid)
    assert full.shape == (2, *grid) == (2, 6, 6)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(cls_attention_rollout(attentions, grid), expected)


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_cls_rollout_vector_equals_the_library_rollouts(depth: int) -> None:
    torch.manual_seed(depth)
    attentions = [torch.randn(3, 4, 17, 17).mul(3).softmax(-1) for _ in range(depth)]
    ours = cls_rollout_vector(attentions, (4, 4))
    assert ours.shape == (3, 4, 4)
    torch.testing.assert_close(ours, attention_rollout(attentions, (4, 4)), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        ours, cls_attention_rollout(attentions, (4, 4)), atol=1e-6, rtol=1e-5
    )
