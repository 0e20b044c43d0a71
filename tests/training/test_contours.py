"""Formula-driven contours: deterministic per seed whatever the processes, cached, and classes
that a nearest-neighbour can tell apart (each class is one curve)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from training.data import synthetic_store
from training.data.contours import ContourConfig, generate_contours

SMALL = ContourConfig(num_classes=4, instances_per_class=5, image_size=32)


def test_grey_images_with_a_thin_line() -> None:
    images, labels, names = generate_contours(SMALL, workers=1)
    assert images.shape == (20, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert names == [f"contour_{c:04d}" for c in range(4)]
    ink = (images > 0).mean(axis=(1, 2))
    assert (ink > 0.03).all() and (ink < 0.4).all()  # a line, not a blob
    assert images.max() == 255  # full strokes somewhere
    assert len(np.unique(images)) > 10  # box-downsampled: anti-aliased grey edges
    # The curve stays inside the frame: the border rows and columns are nearly empty.
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert (border > 0).mean() < 0.05


def test_deterministic_per_seed_and_independent_of_workers() -> None:
    one = generate_contours(SMALL, workers=1)
    two = generate_contours(SMALL, workers=2)
    other = generate_contours(dataclasses.replace(SMALL, seed=1), workers=1)
    np.testing.assert_array_equal(one[0], two[0])
    assert not np.array_equal(one[0], other[0])


def test_instances_do_not_depend_on_how_many_or_where_they_start() -> None:
    few = generate_contours(dataclasses.replace(SMALL, instances_per_class=2), workers=1)[0]
    many = generate_contours(SMALL, workers=1)[0].reshape(4, 5, 32, 32)
    np.testing.assert_array_equal(few.reshape(4, 2, 32, 32), many[:, :2])
    later = dataclasses.replace(SMALL, instances_per_class=3, first_instance=2)
    np.testing.assert_array_equal(
        generate_contours(later, workers=1)[0].reshape(4, 3, 32, 32), many[:, 2:]
    )


def test_second_call_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels, _ = generate_contours(SMALL, tmp_path, workers=1)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]

    def must_not_draw(*args: object, **kwargs: object) -> None:
        raise AssertionError("drew again instead of reading the cache")

    monkeypatch.setattr(synthetic_store, "draw_classes", must_not_draw)
    again = generate_contours(SMALL, tmp_path, workers=1)
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)
    with pytest.raises(AssertionError, match="drew again"):  # another knob: another file
        generate_contours(dataclasses.replace(SMALL, coef_jitter=0.1), tmp_path, workers=1)


def test_a_class_is_one_curve() -> None:
    # 8 classes x 6 instances: an instance's nearest other image (by correlation of the
    # pixels) is mostly of its own class (chance: 5 of 47).
    images, labels, _ = generate_contours(
        ContourConfig(num_classes=8, instances_per_class=6), workers=1
    )
    flat = images.reshape(len(images), -1).astype(np.float64)
    corr = np.asarray(np.corrcoef(flat))
    np.fill_diagonal(corr, -np.inf)
    assert (labels[corr.argmax(axis=1)] == labels).mean() >= 0.5


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one class"):
        ContourConfig(num_classes=0)
    with pytest.raises(ValueError, match="first_instance"):
        ContourConfig(first_instance=-1)
