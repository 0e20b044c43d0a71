"""The one interface of every data source: indexable images with labels, split into train/val.

A source gives PIL images (lazily for folders, from arrays for in-memory sets) so that training
and evaluation push every image through the same preprocessing as serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image


class ImageSet(Protocol):
    """Labelled images, indexable; `targets` holds every label without loading any image."""

    targets: np.ndarray  # int64 (N,)

    def __len__(self) -> int: ...

    def image(self, index: int) -> Image.Image: ...


class ArrayImages:
    """Images held in memory as uint8 (N, H, W, 3) or (N, H, W)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")

    def subset(self, indices: np.ndarray) -> ArrayImages:
        return ArrayImages(self.images[indices], self.targets[indices])


class FileImages:
    """Image files read only when asked for (ImageNet-size folders never sit in memory)."""

    def __init__(self, paths: list[Path], targets: np.ndarray) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} files but {len(targets)} labels")
        self.paths = paths
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")

    def subset(self, indices: np.ndarray) -> FileImages:
        return FileImages([self.paths[i] for i in indices], self.targets[indices])


@dataclass
class Augmentation:
    """What augmentation suits a source's images (the config may override either)."""

    hflip: bool = True  # mirror images keep their label (not so for digits)
    crop_scale: float = 0.08  # smallest area fraction a random resized crop keeps


@dataclass
class SplitData:
    """What every source returns: train and held-out images, class names, fitting augmentation."""

    name: str
    train: ImageSet
    val: ImageSet
    labels: list[str]
    augmentation: Augmentation

    def __post_init__(self) -> None:
        for split, images in (("train", self.train), ("val", self.val)):
            if len(images) == 0:
                raise ValueError(f"data {self.name!r} has no {split} images")
            if images.targets.max() >= len(self.labels) or images.targets.min() < 0:
                raise ValueError(f"data {self.name!r}: {split} labels out of range")


def split_indices(
    targets: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/val split: `val_fraction` of each class (at least one image of
    every class with two or more) is held out. Returns sorted (train, val) index arrays."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), not {val_fraction}")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        count = round(len(members) * val_fraction)
        count = min(max(count, 1), len(members) - 1) if len(members) > 1 else 0
        val.append(members[:count])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(targets)), val_idx)
    return train_idx, val_idx


def split_arrays(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, list[str]],
    val_fraction: float,
    seed: int,
    augmentation: Augmentation,
) -> SplitData:
    """A source from in-memory (images, targets, label names), split by a seeded fraction."""
    images, targets, labels = arrays
    everything = ArrayImages(images, targets)
    train_idx, val_idx = split_indices(targets, val_fraction, seed)
    return SplitData(
        name=name,
        train=everything.subset(train_idx),
        val=everything.subset(val_idx),
        labels=list(labels),
        augmentation=augmentation,
    )
