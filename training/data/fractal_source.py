"""FractalDB (formula-driven images, no real photos) as a data source."""

from __future__ import annotations

from pathlib import Path

from training.data.base import ArrayImages, Augmentation, SplitData, split_indices


def load_fractal(
    num_classes: int,
    instances_per_class: int,
    image_size: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> SplitData:
    """Generate (or read from the cache) FractalDB and split it by a seeded fraction.

    Fractals are symmetric under mirroring in the label sense (the paper's FractalDB flips),
    and they fill the frame, so crops may be small."""
    from training.data.fractal import generate_fractaldb

    images, targets, labels = generate_fractaldb(
        num_classes,
        instances_per_class,
        image_size,
        seed=seed,
        cache_dir=Path(cache_dir) if cache_dir else None,
        workers=workers,
    )
    everything = ArrayImages(images, targets)
    train_idx, val_idx = split_indices(targets, val_fraction, seed)
    return SplitData(
        name="fractal",
        train=everything.subset(train_idx),
        val=everything.subset(val_idx),
        labels=list(labels),
        augmentation=Augmentation(hflip=True, crop_scale=0.25),
    )
