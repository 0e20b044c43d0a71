"""Shared fixtures: a tiny random ViT, its checkpoint, and the model directory exported from it
(a real `model.onnx` + `config.json`, built once per test session in a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import config_from_name
from model.vit import VisionTransformer

TINY_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TINY_METRICS = {"top1": 0.5, "top5": 0.9, "dataset": "random, for tests"}


def tiny_vit(
    seed: int = 0, variant: str = "vit_tiny_patch8_32", labels: list[str] = TINY_LABELS
) -> VisionTransformer:
    """ViT with patch 8 at 32 px (a 4x4 grid), depth 2, width 64, 2 heads, 10 classes, random
    weights including the head (another `variant` or label set when asked). Linear layers get
    LeCun-normal weights (std 1/sqrt(fan_in), not the paper's 0.02 and zero head), so the
    prediction varies with the input."""
    torch.manual_seed(seed)
    config = config_from_name(
        variant,
        depth=2,
        embed_dim=64,
        num_heads=2,
        num_classes=len(labels),
        labels=labels,
    )
    model = VisionTransformer(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=module.in_features**-0.5)
            torch.nn.init.normal_(module.bias, std=0.02)
    return model.eval()


@pytest.fixture
def tiny_model() -> VisionTransformer:
    """A fresh `tiny_vit()`: the model `tiny_checkpoint` holds, free to modify."""
    return tiny_vit()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A native checkpoint of `tiny_vit()`, carrying held-out metrics."""
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pt"
    save_checkpoint(path, tiny_vit(), metrics=dict(TINY_METRICS))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A model directory (model.onnx, config.json) exported from `tiny_checkpoint`; read-only."""
    from training.export import export_checkpoint

    out = tmp_path_factory.mktemp("models") / "vit-tiny-test"
    return export_checkpoint(tiny_checkpoint, out, name="vit-tiny-test")


OTHER_LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model of another size and label set: patch 8 at 48 px (a 6x6 grid), 3 classes."""
    from training.export import export_model

    out = tmp_path_factory.mktemp("models") / "vit-other"
    model = tiny_vit(seed=1, variant="vit_tiny_patch8_48", labels=OTHER_LABELS)
    return export_model(model, out, name="vit-other")
