"""FractalDB (formula-driven images, no real photos) as a data source."""

from __future__ import annotations

from pathlib import Path

from training.data.base import Augmentation, SplitData, split_arrays
from training.data.fractal import FractalConfig, generate_fractaldb

# A fractal's class survives mirroring (FractalDB flips its instances) but lives in its outline:
# crops mild enough to keep it (crops down to 25% of the area left nothing to learn at 32 px).
FRACTAL_AUGMENTATION = Augmentation(hflip=True, crop_scale=0.75)


def load_fractal(
    config: FractalConfig,
    val_fraction: float = 0.2,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> SplitData:
    """Generate (or read from the cache) FractalDB and split it by a seeded fraction."""
    arrays = generate_fractaldb(config, Path(cache_dir) if cache_dir else None, workers)
    return split_arrays("fractal", arrays, val_fraction, config.seed, FRACTAL_AUGMENTATION)
