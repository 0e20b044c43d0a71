"""FractalDB generation: shapes, determinism across seeds and processes, the cache, the
filling-rate search, and that instances of a class look alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data import synthetic_store
from training.data.fractal import (
    FractalConfig,
    chaos_game,
    filling_rate,
    fractal_cache_path,
    generate_fractaldb,
    map_probabilities,
    search_category,
    weight_variants,
)


def small(
    cache_dir: Path | None = None, workers: int | None = 1, **knobs: Any
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """3 classes x 4 instances at 16 px: enough to tell, quick to draw."""
    config = FractalConfig(num_classes=3, instances_per_class=4, image_size=16, **knobs)
    return generate_fractaldb(config, cache_dir, workers)


def test_shapes_dtypes_labels() -> None:
    images, labels, names = small()
    assert images.shape == (12, 16, 16, 3)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert names == ["fractal_0000", "fractal_0001", "fractal_0002"]
    drawn = (images.max(axis=-1) > 0).mean(axis=(1, 2))  # occupied fraction of each image
    assert (drawn > 0.05).all() and (drawn < 0.95).all()


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    first = small(seed=3)
    again = small(seed=3)
    other = small(seed=4)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_workers_do_not_change_the_arrays() -> None:
    one = small(workers=1)
    two = small(workers=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert one[2] == two[2]


def test_a_class_does_not_depend_on_how_many_classes() -> None:
    few = generate_fractaldb(FractalConfig(2, 3, 16), workers=1)[0]
    more = generate_fractaldb(FractalConfig(3, 3, 16), workers=1)[0]
    np.testing.assert_array_equal(few, more[:6])


def test_second_call_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels, names = small(cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind

    def must_not_generate(*args: object, **kwargs: object) -> None:
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(synthetic_store, "draw_classes", must_not_generate)
    cached = small(cache_dir=tmp_path, workers=2)
    np.testing.assert_array_equal(cached[0], images)
    np.testing.assert_array_equal(cached[1], labels)
    assert cached[1].dtype == np.int64
    assert cached[2] == names


def test_cache_key_covers_every_knob(tmp_path: Path) -> None:
    base = FractalConfig(3, 4, 16)
    path = fractal_cache_path(tmp_path, base)
    assert path == fractal_cache_path(tmp_path, FractalConfig(3, 4, 16))
    for changed in (
        {"seed": 1},
        {"image_size": 32},
        {"color": True},
        {"supersample": 1},
        {"weights": (1.0,)},
    ):
        assert path != fractal_cache_path(tmp_path, dataclasses.replace(base, **changed))


def test_accepted_categories_fill_the_canvas() -> None:
    for class_index in range(4):
        category = search_category(FractalConfig(), class_index)
        assert category.filling_rate >= 0.2
        assert 2 <= len(category.params) <= 7
        # A fresh draw of the same system fills about as much: the rate is the attractor's.
        points = chaos_game(category.params, 100_000, np.random.default_rng(123))
        assert filling_rate(points) >= 0.2 - 0.02


def test_filling_rate() -> None:
    rng = np.random.default_rng(0)
    assert filling_rate(rng.uniform(size=(200_000, 2)), canvas_size=64, pad=0) == 1.0
    line = np.stack([np.linspace(0, 1, 1000), np.zeros(1000)], axis=1)  # one row of pixels
    assert filling_rate(line, canvas_size=64, pad=0) == pytest.approx(1 / 64)
    assert filling_rate(np.full((10, 2), np.nan)) == 0.0


def test_chaos_game_draws_the_sierpinski_triangle() -> None:
    half = [0.5, 0.0, 0.0, 0.5]
    params = np.array([half + [0.0, 0.0], half + [0.5, 0.0], half + [0.25, 0.5]])
    points = chaos_game(params, 20_000, np.random.default_rng(0))
    assert points.shape == (20_000, 2)
    assert (points >= -1e-9).all() and (points <= 1 + 1e-9).all()
    # The middle of the removed central triangle, (0.5, 0.25), stays empty.
    assert np.linalg.norm(points - [0.5, 0.25], axis=1).min() > 0.1
    assert filling_rate(points, canvas_size=64) < 0.6  # holes everywhere, unlike a square


def test_diverging_system_fills_nothing() -> None:
    params = np.array([[3.0, 0.0, 0.0, 3.0, 0.1, 0.1], [4.0, 0.0, 0.0, 4.0, 0.0, 0.2]])
    points = chaos_game(params, 10_000, np.random.default_rng(0))
    assert np.isnan(points).all()
    assert filling_rate(points) == 0.0


def test_map_probabilities_follow_the_determinant() -> None:
    params = np.array([[1.0, 0.0, 0.0, 0.5, 0, 0], [0.0, -1.0, 1.0, 0.0, 0, 0]])
    np.testing.assert_allclose(map_probabilities(params), [1 / 3, 2 / 3])
    flat = np.zeros((3, 6))  # every map collapses the plane: uniform
    np.testing.assert_allclose(map_probabilities(flat), [1 / 3] * 3)


def test_weight_variants() -> None:
    variants = weight_variants((0.8, 0.9, 1.0, 1.1, 1.2))
    assert variants[0] == (0, 1.0)  # the system itself
    assert len(variants) == 1 + 6 * 4
    assert len(set(variants)) == len(variants)


def test_instances_differ_but_share_structure() -> None:
    # Grey and unflipped, so pixel correlation compares shapes, not colours or mirror images.
    images, labels, _ = generate_fractaldb(FractalConfig(5, 6, 32, flip=False), workers=1)
    masks = (images[..., 0] > 0).reshape(len(images), -1).astype(np.float64)
    assert len({m.tobytes() for m in masks}) == len(masks)  # no two instances alike
    corr = np.asarray(np.corrcoef(masks))
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    assert corr[same & off_diagonal].mean() > corr[~same].mean()
    # Every fractal fills the frame, so all overlap a lot; yet an instance's nearest image is
    # mostly of its own class (chance: 5 of 29).
    np.fill_diagonal(corr, -np.inf)
    assert (labels[corr.argmax(axis=1)] == labels).mean() >= 0.6
