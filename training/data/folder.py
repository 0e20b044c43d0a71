"""An ImageFolder-layout directory: `root/<class>/*.jpg`, or `root/{train,val}/<class>/*`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.base import Augmentation, FileImages, SplitData, split_indices

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)


def _scan(root: Path, labels: list[str] | None = None) -> tuple[FileImages, list[str]]:
    """Every image under `root/<class>/` (recursively), classes sorted by name."""
    if labels is None:
        labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise ValueError(f"{root} has no class folders (expected {root}/<class>/*.jpg)")
    paths: list[Path] = []
    targets: list[int] = []
    for index, label in enumerate(labels):
        folder = root / label
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        targets += [index] * len(files)
    return FileImages(paths, np.asarray(targets, dtype=np.int64)), labels


def load_folder(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> SplitData:
    """Train/val from `train/` and `val/` subfolders if both exist (classes named by train/),
    else one class-per-folder tree split by a seeded stratified fraction."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, labels = _scan(root / "train")
        val, _ = _scan(root / "val", labels)
    else:
        everything, labels = _scan(root)
        train_idx, val_idx = split_indices(everything.targets, val_fraction, seed)
        train, val = everything.subset(train_idx), everything.subset(val_idx)
    return SplitData(root.name, train, val, labels, Augmentation(hflip=True, crop_scale=0.08))
