"""timm state dicts load into our model and give timm's logits; errors name key and shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from model import load_model

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import checkpoint_filter_fn  # noqa: E402

Randomize = Callable[..., Any]  # foreign models: typed loosely
RelError = Callable[[Tensor, Tensor], float]


def _small_timm(randomize: Randomize, **kwargs: Any) -> Any:
    """A 2-block tiny ViT at 64 px: the same code paths as the full one, in milliseconds."""
    model = timm.create_model("vit_tiny_patch16_224", depth=2, img_size=64, **kwargs)
    return randomize(model)


@pytest.mark.parametrize(
    ("name", "batch"),
    [("vit_tiny_patch16_224", 2), ("vit_small_patch16_384", 1), ("vit_small_patch32_224", 2)],
)
def test_named_variants_give_timms_logits(
    name: str, batch: int, tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    theirs = randomize(timm.create_model(name))
    path = tmp_path / "model.pth"
    torch.save(theirs.state_dict(), path)
    loaded = load_model(path)  # architecture told from the shapes: no arch needed
    assert loaded.format == "timm"
    assert loaded.model.config.name == name
    assert loaded.model.config.layer_norm_eps == 1e-6
    x = torch.randn(batch, 3, theirs.patch_embed.img_size[0], theirs.patch_embed.img_size[1])
    with torch.no_grad():
        assert rel_error(loaded.model(x), theirs(x)) <= 1e-5


@pytest.mark.parametrize("packaging", ["safetensors+compile", "model", "state_dict+ddp", "bin"])
def test_wrapped_and_prefixed_state_dicts(
    packaging: str, tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    theirs = _small_timm(randomize)
    state = theirs.state_dict()
    if packaging == "safetensors+compile":
        path = tmp_path / "model.safetensors"
        save_file({f"_orig_mod.{k}": v.contiguous() for k, v in state.items()}, path)
    else:
        path = tmp_path / ("pytorch_model.bin" if packaging == "bin" else "checkpoint.pt")
        if packaging == "model":
            content: dict[str, Any] = {"model": state, "epoch": 3}
        elif packaging == "state_dict+ddp":
            content = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
        else:
            content = state
        torch.save(content, path)
    loaded = load_model(path, arch="vit_tiny_patch16_64", depth=2)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_error(loaded.model(x), theirs(x)) <= 1e-5


def test_224_checkpoint_into_a_384_model_matches_timms_resampling(
    tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    state = randomize(timm.create_model("vit_tiny_patch16_224")).state_dict()
    path = tmp_path / "tiny224.pth"
    torch.save(state, path)
    theirs = timm.create_model("vit_tiny_patch16_384").eval()
    theirs.load_state_dict(checkpoint_filter_fn(state, theirs))
    by_size = load_model(path, image_size=384)
    by_name = load_model(path, arch="vit_tiny_patch16_384")
    assert by_size.model.config.name == by_name.model.config.name == "vit_tiny_patch16_384"
    assert by_size.model.pos_embed.shape == (1, 1 + 24 * 24, 192)
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        expected = theirs(x)
        assert rel_error(by_size.model(x), expected) <= 1e-5
        assert rel_error(by_name.model(x), expected) <= 1e-5


def test_other_number_of_classes_gets_a_zero_head(
    tmp_path: Path, randomize: Randomize, rel_error: RelError
) -> None:
    theirs = _small_timm(randomize, num_classes=5)
    path = tmp_path / "model.pth"
    torch.save(theirs.state_dict(), path)
    loaded = load_model(path, arch="vit_tiny_patch16_64", depth=2, num_classes=3)
    head = loaded.model.head
    assert isinstance(head, nn.Linear) and head.weight.shape == (3, 192)
    assert not head.weight.any() and not head.bias.any()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features, _ = loaded.model.forward_features(x)
        assert rel_error(features, theirs.forward_features(x)) <= 1e-5
    assert loaded.labels == []


def test_a_timm_hub_directory_names_its_architecture(tmp_path: Path, randomize: Randomize) -> None:
    # Weights at 48 px, config.json saying 32 px: the file's word wins, positions are resampled.
    theirs = randomize(timm.create_model("vit_tiny_patch16_224", img_size=48))
    state = {k: v.contiguous() for k, v in theirs.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"architecture": "vit_tiny_patch16_32.my_tag"}')
    loaded = load_model(tmp_path)
    assert loaded.model.config.name == "vit_tiny_patch16_32"
    assert loaded.model.pos_embed.shape == (1, 5, 192)


def test_shapes_that_do_not_fit_name_the_key_and_both_shapes(
    tmp_path: Path, randomize: Randomize
) -> None:
    path = tmp_path / "model.pth"
    torch.save(_small_timm(randomize).state_dict(), path)
    with pytest.raises(ValueError, match=r"'cls_token' has shape \(1, 1, 192\) .* \(1, 1, 384\)"):
        load_model(path, arch="vit_small_patch16_64", depth=2)
    with pytest.raises(ValueError, match=r"missing 'blocks\.2\.norm1\.weight'"):
        load_model(path, arch="vit_tiny_patch16_64", depth=3)
    with pytest.raises(ValueError, match="give arch="):
        load_model(path)  # depth 2 is no named size, and heads never show in shapes


def test_extra_keys_are_named(tmp_path: Path, randomize: Randomize) -> None:
    state = _small_timm(randomize).state_dict()
    state["fc_norm.weight"] = torch.ones(192)
    path = tmp_path / "model.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"unexpected 'fc_norm\.weight' \(checkpoint shape \(192,"):
        load_model(path, arch="vit_tiny_patch16_64", depth=2)


def test_a_file_that_is_no_vit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    with pytest.raises(ValueError, match="not a ViT checkpoint.*'conv1.weight'"):
        load_model(path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_model(junk)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pth")
