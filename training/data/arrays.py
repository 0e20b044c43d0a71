"""Fixed, preprocessed image sets drawn from a data source: what int8 calibrates on (training
images) and what precision conversions are checked on (held-out images)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.model_config import PreprocessConfig
from app.preprocess import preprocess
from training.config import TrainConfig
from training.data.base import ImageSet
from training.data.sources import load_source


@dataclass(frozen=True)
class LabelledArrays:
    """Preprocessed images (N, 3, H, W) float32 and their labels (N,)."""

    images: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


def draw(images: ImageSet, spec: PreprocessConfig, count: int | None, seed: int) -> LabelledArrays:
    """`count` images drawn at random without replacement (all, in order, if `count` is None or
    at least the set's size), through the service's preprocessing."""
    if count is not None and count < 1:
        raise ValueError(f"count must be positive, not {count}")
    if count is None or count >= len(images):
        indices = np.arange(len(images))
    else:
        indices = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    arrays = np.stack([preprocess(images.image(int(i)), spec) for i in indices])
    return LabelledArrays(arrays.astype(np.float32), images.targets[indices])


@dataclass(frozen=True)
class CheckImages:
    """Training images to calibrate on and held-out images to check on, from one source."""

    calibration: LabelledArrays
    held_out: LabelledArrays
    labels: list[str]


def check_images(
    data: str,
    spec: PreprocessConfig,
    calibration_count: int,
    held_out_count: int | None,
    config: TrainConfig | None = None,
) -> CheckImages:
    """Draw both sets from `data` (a folder, `fractal`, `digits`, `mnist`), split as training
    splits it (`config`'s val fraction and seed; the defaults otherwise)."""
    config = config or TrainConfig()
    split = load_source(data, config, spec.crop[0])
    return CheckImages(
        calibration=draw(split.train, spec, calibration_count, config.seed),
        held_out=draw(split.val, spec, held_out_count, config.seed),
        labels=split.labels,
    )
