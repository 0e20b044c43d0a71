"""SRC on the command line -> a `SplitData`: a folder path, `fractal`, `contours`, or a packaged
set."""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig
from training.data.base import SplitData
from training.data.contour_source import load_contours
from training.data.contours import ContourConfig
from training.data.folder import load_folder
from training.data.fractal import FractalConfig
from training.data.fractal_source import load_fractal
from training.data.packaged import PACKAGED, load_packaged


def load_source(spec: str, config: TrainConfig, image_size: int) -> SplitData:
    """The data named by `spec`, split with the config's seed and val fraction."""
    if spec == "fractal":
        fractals = FractalConfig(
            num_classes=config.fractal_classes,
            instances_per_class=config.fractal_instances,
            image_size=image_size,
            seed=config.seed,
        )
        return load_fractal(fractals, config.val_fraction, config.cache_dir)
    if spec == "contours":
        contours = ContourConfig(
            num_classes=config.contour_classes,
            instances_per_class=config.contour_instances,
            image_size=image_size,
            seed=config.seed,
        )
        return load_contours(contours, config.val_fraction, config.cache_dir)
    if spec in PACKAGED:
        return load_packaged(spec, config.val_fraction, config.seed)
    if Path(spec).is_dir():
        return load_folder(spec, config.val_fraction, config.seed)
    raise ValueError(
        f"unknown data {spec!r}: expected a folder, 'fractal', 'contours', or one of "
        f"{', '.join(PACKAGED)}"
    )
