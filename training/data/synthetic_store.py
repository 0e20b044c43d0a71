"""What every formula-driven source (FractalDB, contours) shares: drawing classes in parallel
processes, keeping the arrays in a cache file keyed by every knob that changes them, and the
box filter that brings an image drawn at several times the size down to it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from app.cores import available_cores

log = logging.getLogger(__name__)

Job = TypeVar("Job")


class SyntheticConfig(Protocol):
    """What every formula-driven source's config (a frozen dataclass) has."""

    @property
    def num_classes(self) -> int: ...
    @property
    def instances_per_class(self) -> int: ...
    @property
    def image_size(self) -> int: ...


Config = TypeVar("Config", bound=SyntheticConfig)

# (images uint8 (N, H, W[, 3]), labels int64 (N,), class names)
Arrays = tuple[np.ndarray, np.ndarray, list[str]]


def draw_classes(
    make_class: Callable[[Job], np.ndarray], jobs: Sequence[Job], workers: int | None
) -> np.ndarray:
    """`make_class` of every job, concatenated in job order, in up to `workers` processes
    (None: every core this process may use). The result never depends on `workers`."""
    workers = min(workers or available_cores(), len(jobs))
    if workers <= 1:
        return np.concatenate([make_class(job) for job in jobs])
    # spawn, not fork: the caller may already hold CUDA or torch's thread pools, which a
    # forked child inherits broken. Scripts need the usual `if __name__ == "__main__"`.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return np.concatenate(list(pool.map(make_class, jobs)))


def box_downsample(image: npt.NDArray[Any], factor: int) -> npt.NDArray[np.uint8]:
    """Mean of every factor x factor block of an (H, W) or (H, W, C) image, as uint8 (a bool
    mask counts True as 255): strokes and points drawn at `factor` times the size come out
    anti-aliased."""
    values = image.astype(np.float64) * (255.0 if image.dtype == np.bool_ else 1.0)
    side = image.shape[0] // factor
    blocks = values.reshape(side, factor, side, factor, *image.shape[2:]).mean(axis=(1, 3))
    return np.rint(blocks).astype(np.uint8)


def cache_path(cache_dir: Path, prefix: str, key: dict[str, Any]) -> Path:
    """One file per distinct `key` (every knob that changes the arrays, with a version)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{prefix}_{digest}.npz"


def save_arrays(path: Path, arrays: Arrays) -> None:
    """Write, then rename: a reader (or a parallel run) never sees half a file."""
    images, labels, names = arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels, names=np.array(names))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_arrays(path: Path) -> Arrays | None:
    """The cached arrays, or None when there is no readable file (it is then redrawn)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["images"], data["labels"], [str(n) for n in data["names"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable cache file %s: %s", path, e)
        return None


def cached(path: Path | None, draw: Callable[[], Arrays], what: str) -> Arrays:
    """Read `path` if it holds the arrays, else draw them (and write them when a path is given)."""
    if path is not None:
        found = load_arrays(path)
        if found is not None:
            log.info("%s read from %s", what, path)
            return found
    arrays = draw()
    if path is not None:
        save_arrays(path, arrays)
    return arrays


def synthetic_cache_path(cache_dir: Path, stem: str, config: Any, version: int) -> Path:
    """The cache file of a source's dataclass `config`: one per distinct set of knobs."""
    key = {"version": version, **dataclasses.asdict(config)}
    prefix = f"{stem}_c{config.num_classes}_i{config.instances_per_class}_{config.image_size}px"
    return cache_path(cache_dir, prefix, key)


def synthesize(
    what: str,
    config: Config,
    draw_class: Callable[[tuple[Config, int]], np.ndarray],
    path: Path | None,
    workers: int | None,
) -> Arrays:
    """Every class of `config` drawn by `draw_class((config, class_index))` in parallel (or read
    from `path`, and written there), labels grouped by class, names '<what>_0000'."""
    names = [f"{what}_{c:04d}" for c in range(config.num_classes)]
    labels = np.repeat(np.arange(config.num_classes, dtype=np.int64), config.instances_per_class)

    def draw() -> Arrays:
        start = time.perf_counter()
        images = draw_classes(draw_class, [(config, c) for c in range(config.num_classes)], workers)
        log.info(
            "%s: %d classes x %d instances at %dpx in %.1fs",
            what,
            config.num_classes,
            config.instances_per_class,
            config.image_size,
            time.perf_counter() - start,
        )
        return images, labels, names

    return cached(path, draw, what)
