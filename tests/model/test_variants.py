"""Variant names: vit_{size}_patch{P}_{RES} for any P dividing RES, plus overrides."""

from __future__ import annotations

import pytest

from model import ViTConfig, config_from_name, parse_variant


@pytest.mark.parametrize(
    ("name", "dims"),
    [
        ("vit_tiny_patch16_224", (192, 12, 3, 16, 224)),
        ("vit_small_patch32_384", (384, 12, 6, 32, 384)),
        ("vit_base_patch14_518", (768, 12, 12, 14, 518)),
        ("vit_large_patch7_28", (1024, 24, 16, 7, 28)),
        ("vit_huge_patch14_224", (1280, 32, 16, 14, 224)),
        ("vit_tiny_patch4_32", (192, 12, 3, 4, 32)),
    ],
)
def test_named_variants_parse(name: str, dims: tuple[int, int, int, int, int]) -> None:
    c = config_from_name(name)
    assert (c.embed_dim, c.depth, c.num_heads, c.patch_size, c.image_size) == dims
    assert c.name == name
    assert c.grid_size == (dims[4] // dims[3],) * 2


@pytest.mark.parametrize("resolution", [224, 384, 96])
def test_every_patch_size_dividing_the_resolution_parses(resolution: int) -> None:
    for patch in range(1, resolution + 1):
        name = f"vit_small_patch{patch}_{resolution}"
        if resolution % patch:
            with pytest.raises(ValueError, match="not divisible"):
                config_from_name(name)
        else:
            assert config_from_name(name).num_patches == (resolution // patch) ** 2


def test_overrides_win_over_the_name() -> None:
    c = config_from_name("vit_base_patch16_224", depth=6, num_classes=10, image_size=384)
    assert (c.depth, c.num_classes, c.image_size, c.embed_dim) == (6, 10, 384, 768)
    assert config_from_name("vit_base_patch16_224", depth=None).depth == 12
    assert ViTConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "name", ["vit_medium_patch16_224", "vit_base_patch16", "deit_base_patch16_224", "vit_base"]
)
def test_unknown_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        parse_variant(name)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        config_from_name("vit_tiny_patch0_224")
    with pytest.raises(ValueError, match="num_heads"):
        config_from_name("vit_tiny_patch16_224", num_heads=5)
