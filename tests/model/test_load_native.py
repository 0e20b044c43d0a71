"""Our own checkpoints rebuild the model from the file alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model import VisionTransformer, config_from_name, load_model
from model.checkpoint import save_checkpoint
from model.pos_embed import resample_pos_embed

Randomize = Callable[..., Any]  # foreign models: typed loosely
RelError = Callable[[Tensor, Tensor], float]


def _saved(tmp_path: Path, randomize: Randomize) -> tuple[VisionTransformer, Path]:
    config = config_from_name(
        "vit_tiny_patch8_32", depth=2, num_classes=3, labels=["a", "b", "c"], layer_norm_eps=1e-5
    )
    model = VisionTransformer(config)
    randomize(model)
    path = tmp_path / "ours.pt"
    save_checkpoint(path, model, epoch=4, optimizer={"step": torch.tensor(10)})
    return model, path


def test_native_checkpoint_round_trips(
    tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    model, path = _saved(tmp_path, randomize)
    loaded = load_model(path, arch="vit_base_patch16_224")  # the file's config wins
    assert loaded.format == "native"
    assert loaded.labels == ["a", "b", "c"]
    assert loaded.source == path
    assert loaded.model.config == model.config
    assert not loaded.model.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel_error(loaded.model(x), model(x)) == 0


def test_native_with_other_classes_resolution_and_overrides(
    tmp_path: Path, randomize: Randomize
) -> None:
    model, path = _saved(tmp_path, randomize)
    loaded = load_model(path, num_classes=5, image_size=48, drop_path_rate=0.1)
    config = loaded.model.config
    assert (config.num_classes, config.image_size, config.drop_path_rate) == (5, 48, 0.1)
    assert config.name == "vit_tiny_patch8_48"
    assert loaded.labels == [] and config.labels == []
    expected = resample_pos_embed(model.pos_embed.detach(), (6, 6))
    torch.testing.assert_close(loaded.model.pos_embed.detach(), expected)
    assert loaded.model(torch.randn(1, 3, 48, 48)).abs().max() == 0
    key = "blocks.1.mlp.fc2.weight"
    torch.testing.assert_close(loaded.model.state_dict()[key], model.state_dict()[key])


def test_unknown_override_is_refused(tmp_path: Path, randomize: Randomize) -> None:
    _, path = _saved(tmp_path, randomize)
    try:
        load_model(path, hidden_size=64)
    except ValueError as error:
        assert "hidden_size" in str(error)
    else:
        raise AssertionError("an unknown field was accepted")
