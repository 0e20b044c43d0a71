"""Formula-driven contours (`training.data.contours`) as a data source."""

from __future__ import annotations

from pathlib import Path

from training.data.base import Augmentation, SplitData, split_arrays
from training.data.contours import ContourConfig, generate_contours

# A contour's class is its outline: mirror images are other curves, small crops cut it off.
CONTOUR_AUGMENTATION = Augmentation(hflip=False, crop_scale=0.75)


def load_contours(
    config: ContourConfig,
    val_fraction: float = 0.2,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> SplitData:
    """Generate (or read from the cache) the contours and split them by a seeded fraction."""
    arrays = generate_contours(config, Path(cache_dir) if cache_dir else None, workers)
    return split_arrays("contours", arrays, val_fraction, config.seed, CONTOUR_AUGMENTATION)
