"""Hugging Face ViT directories and weight files, in transformers 4.x and 5.x names."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from model import load_model

transformers = pytest.importorskip("transformers")

Randomize = Callable[..., Any]  # foreign models: typed loosely
RelError = Callable[[Tensor, Tensor], float]
LABELS = ["cat", "dog", "fox", "owl", "elk"]

# The same layer under both namings (after the optional "vit." prefix).
_V4_TO_V5 = [
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(q)uery\.", r"layers.\1.attention.\2_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(k)ey\.", r"layers.\1.attention.\2_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(v)alue\.", r"layers.\1.attention.\2_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.o_proj."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp.fc1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp.fc2."),
    (r"encoder\.layer\.(\d+)\.layernorm_", r"layers.\1.layernorm_"),
]
_V5_TO_V4 = [
    (r"layers\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
    (r"layers\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
    (r"layers\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
    (r"layers\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"layers\.(\d+)\.layernorm_", r"encoder.layer.\1.layernorm_"),
]


def _rename(state: dict[str, Tensor], rules: list[tuple[str, str]]) -> dict[str, Tensor]:
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def _hf_config(**kwargs: object) -> object:
    return transformers.ViTConfig(
        hidden_size=192,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=64,
        patch_size=16,
        id2label=dict(enumerate(LABELS)),
        **kwargs,
    )


@pytest.fixture
def saved(tmp_path: Path, randomize: Randomize) -> tuple[Any, Path]:
    hf = randomize(transformers.ViTForImageClassification(_hf_config()))
    hf.save_pretrained(tmp_path / "saved")
    return hf, tmp_path / "saved"


def _with_naming(directory: Path, naming: str, tmp_path: Path) -> Path:
    """A copy of a save_pretrained directory whose weights use one naming, whichever the
    installed transformers writes."""
    state = load_file(directory / "model.safetensors")
    state = _rename(state, _V5_TO_V4 if naming == "4.x" else _V4_TO_V5)
    has_v4 = any("encoder.layer." in k for k in state)
    assert has_v4 == (naming == "4.x") and any(".layers." in k for k in state) != has_v4
    out = tmp_path / naming
    out.mkdir()
    shutil.copy(directory / "config.json", out / "config.json")
    save_file(state, out / "model.safetensors")
    return out


@pytest.mark.parametrize("naming", ["4.x", "5.x"])
def test_classifier_gives_the_same_logits(
    naming: str, saved: tuple[Any, Path], tmp_path: Path, rel_error: RelError
) -> None:
    hf, directory = saved
    loaded = load_model(_with_naming(directory, naming, tmp_path))
    assert loaded.format == "huggingface"
    assert loaded.labels == LABELS
    config = loaded.model.config
    assert (config.embed_dim, config.depth, config.num_heads, config.image_size) == (192, 2, 3, 64)
    assert config.layer_norm_eps == 1e-12
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_error(loaded.model(x), hf(pixel_values=x).logits) <= 1e-5


def test_weights_file_with_its_config_beside_it(
    saved: tuple[Any, Path], rel_error: RelError
) -> None:
    hf, directory = saved
    loaded = load_model(directory / "model.safetensors")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_error(loaded.model(x), hf(pixel_values=x).logits) <= 1e-5
    assert loaded.labels == LABELS


def test_other_classes_and_resolution(saved: tuple[Any, Path]) -> None:
    _, directory = saved
    loaded = load_model(directory, num_classes=10, image_size=96)
    assert loaded.labels == []
    assert loaded.model.config.num_classes == 10
    assert loaded.model.pos_embed.shape == (1, 1 + 36, 192)
    assert loaded.model(torch.randn(1, 3, 96, 96)).abs().max() == 0  # a fresh zero head


def test_vit_model_with_pooler_is_features_and_pre_logits(
    tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    hf = randomize(transformers.ViTModel(_hf_config()))
    hf.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.model.config.num_classes == 0
    assert loaded.model.config.representation_size == 192
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = hf(pixel_values=x)
        features, _ = loaded.model.forward_features(x)
        assert rel_error(features, out.last_hidden_state) <= 1e-5
        assert rel_error(loaded.model(x), out.pooler_output) <= 1e-5


def test_a_weights_file_alone_needs_a_named_size_or_arch(
    saved: tuple[Any, Path], tmp_path: Path
) -> None:
    _, directory = saved
    alone = tmp_path / "alone" / "weights.safetensors"
    alone.parent.mkdir()
    shutil.copy(directory / "model.safetensors", alone)
    with pytest.raises(ValueError, match="give arch="):
        load_model(alone)
    loaded = load_model(alone, arch="vit_tiny_patch16_64", depth=2)
    assert loaded.model.config.layer_norm_eps == 1e-12  # Hugging Face's, not timm's


def test_other_model_types_are_refused(saved: tuple[Any, Path]) -> None:
    _, directory = saved
    config = (directory / "config.json").read_text()
    (directory / "config.json").write_text(config.replace('"gelu"', '"gelu_new"'))
    with pytest.raises(ValueError, match="hidden_act 'gelu_new'"):
        load_model(directory)
