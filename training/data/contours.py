"""Formula-driven contours: grey line drawings of smooth radial curves, one curve per class.

After RCDB (Kataoka et al., "Replacing Labeled Real-image Datasets with Auto-generated Contours",
CVPR 2022), which found that outlines are what a ViT learns from formula-driven images. A class
is a radial curve r(t) = 1 + sum_k a_k cos(f_k t + phi_k) on a base ellipse, closed or an open
arc; an instance jitters its coefficients and phases, rotates, scales and shifts it, and draws it
as a line at `supersample` times the size, box-downsampled so the strokes stay smooth at 32 px.

Every random draw comes from a generator seeded by (seed, class) or (seed, class, instance), so
the arrays are identical bit for bit however many processes draw them, and instance i of a
class is the same whatever `instances_per_class` is (a held-out set is a later range of
instances: `first_instance`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.synthetic_store import (
    Arrays,
    box_downsample,
    synthesize,
    synthetic_cache_path,
)

log = logging.getLogger(__name__)

# Bump when the drawing changes, so old cache files stop matching.
_CACHE_VERSION = 1
_CLASS_STREAM = 0
_INSTANCE_STREAM = 1
_CURVE_POINTS = 2048  # samples along a curve: < 0.5 px apart at 128 px


@dataclass(frozen=True)
class ContourConfig:
    """Everything that decides the images; its JSON (with the version) is the cache key."""

    num_classes: int = 50
    instances_per_class: int = 100
    first_instance: int = 0  # draw instances first_instance.. (a held-out set: a later range)
    image_size: int = 32
    seed: int = 0
    terms: int = 4  # cosine terms of r(t)
    amplitude: float = 0.35  # a_k ~ U(0, amplitude) / sqrt(k)
    max_frequency: int = 6  # f_k integer in 1..max_frequency
    min_aspect: float = 0.5  # the base ellipse's minor/major axis ~ U(min_aspect, 1)
    open_fraction: float = 0.5  # share of classes that are open arcs
    arc: tuple[float, float] = (0.8, 1.6)  # an open arc's length, in units of pi
    coef_jitter: float = 0.06  # per instance: sigma of a_k noise
    phase_jitter: float = 0.18  # per instance: sigma of phi_k noise (radians)
    rotation: float = 0.35  # per instance: rotation ~ U(-rotation, rotation) (radians)
    scale: tuple[float, float] = (0.55, 0.8)  # per instance: curve half-extent / half-side
    shift: float = 0.08  # per instance: centre offset ~ U(-shift, shift) of the side
    line_width: tuple[float, float] = (1.0, 2.2)  # per instance, in output pixels
    supersample: int = 4  # drawn at this many times the size, then box-downsampled

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.instances_per_class < 1:
            raise ValueError(
                f"need at least one class and instance, got {self.num_classes}, "
                f"{self.instances_per_class}"
            )
        if self.first_instance < 0:
            raise ValueError(f"first_instance must be >= 0, not {self.first_instance}")
        if self.image_size < 4 or self.supersample < 1:
            raise ValueError(
                f"image_size must be >= 4 and supersample >= 1, got {self.image_size}, "
                f"{self.supersample}"
            )
        if self.terms < 1 or self.max_frequency < 1:
            raise ValueError("terms and max_frequency must be >= 1")


@dataclass(frozen=True)
class Curve:
    """One class: the radial curve's terms, its base ellipse and orientation, its arc."""

    amplitudes: npt.NDArray[np.float64]  # (terms,)
    frequencies: npt.NDArray[np.int64]  # (terms,)
    phases: npt.NDArray[np.float64]  # (terms,)
    aspect: float
    orientation: float  # radians
    arc_start: float  # radians
    arc_length: float  # radians; 2 pi for a closed curve


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def class_curve(config: ContourConfig, class_index: int) -> Curve:
    """The curve of class `class_index`, on its own random stream."""
    rng = _rng(config.seed, _CLASS_STREAM, class_index)
    k = np.arange(1, config.terms + 1)
    is_open = rng.random() < config.open_fraction
    return Curve(
        amplitudes=rng.uniform(0.0, config.amplitude, config.terms) / np.sqrt(k),
        frequencies=rng.integers(1, config.max_frequency + 1, config.terms),
        phases=rng.uniform(0.0, 2 * math.pi, config.terms),
        aspect=float(rng.uniform(config.min_aspect, 1.0)),
        orientation=float(rng.uniform(0.0, 2 * math.pi)),
        arc_start=float(rng.uniform(0.0, 2 * math.pi)),
        arc_length=float(rng.uniform(*config.arc) * math.pi) if is_open else 2 * math.pi,
    )


def curve_points(
    curve: Curve, amplitudes: npt.NDArray[np.float64], phases: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """(points, 2) along the curve with these terms, centred, largest half-extent 1."""
    t = curve.arc_start + np.linspace(0.0, curve.arc_length, _CURVE_POINTS)
    angles = curve.frequencies[:, None] * t + phases[:, None]  # (terms, points)
    r = 1.0 + (amplitudes[:, None] * np.cos(angles)).sum(axis=0)
    r = np.maximum(r, 0.05)  # jitter may push a dent through the centre
    xy = np.stack([r * np.cos(t), curve.aspect * r * np.sin(t)], axis=1)
    xy -= (xy.max(axis=0) + xy.min(axis=0)) / 2
    return xy / max(float(np.abs(xy).max()), 1e-9)


def _disc(radius: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row and column offsets of the pixels within `radius` of a pixel's centre."""
    reach = math.ceil(radius)
    dr, dc = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    inside = dr**2 + dc**2 <= radius**2
    return dr[inside], dc[inside]


def draw_line(points: npt.NDArray[np.float64], side: int, width: float) -> npt.NDArray[np.bool_]:
    """A side x side mask of the polyline through `points` (pixel coordinates, x right, y
    up), `width` pixels wide: a disc stamped on every sample (they are < 0.5 px apart)."""
    dr, dc = _disc(max(width / 2, 0.5))
    rows = np.rint(side - 1 - points[:, 1]).astype(np.int64)[:, None] + dr
    cols = np.rint(points[:, 0]).astype(np.int64)[:, None] + dc
    keep = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    mask = np.zeros(side * side, dtype=bool)
    mask[rows[keep] * side + cols[keep]] = True
    return mask.reshape(side, side)


def draw_instance(
    config: ContourConfig, curve: Curve, class_index: int, instance: int
) -> npt.NDArray[np.uint8]:
    """Instance `instance` of a class: (image_size, image_size) uint8, white on black."""
    rng = _rng(config.seed, _INSTANCE_STREAM, class_index, instance)
    amplitudes = curve.amplitudes + rng.normal(0.0, config.coef_jitter, config.terms)
    phases = curve.phases + rng.normal(0.0, config.phase_jitter, config.terms)
    angle = curve.orientation + rng.uniform(-config.rotation, config.rotation)
    scale = rng.uniform(*config.scale)
    shift = rng.uniform(-config.shift, config.shift, 2)
    width = rng.uniform(*config.line_width)
    side = config.image_size * config.supersample
    xy = curve_points(curve, amplitudes, phases)
    cos, sin = math.cos(angle), math.sin(angle)
    xy = xy @ np.array([[cos, sin], [-sin, cos]])  # rotate by `angle`
    xy = (xy * scale + shift * 2 + 1.0) * (side / 2) - 0.5  # [-1, 1] -> pixel centres
    mask = draw_line(xy, side, width * config.supersample)
    return box_downsample(mask, config.supersample)


def _draw_class(job: tuple[ContourConfig, int]) -> np.ndarray:
    """All instances of one class, (instances, H, W): the unit of work of a process."""
    config, class_index = job
    curve = class_curve(config, class_index)
    return np.stack(
        [
            draw_instance(config, curve, class_index, config.first_instance + i)
            for i in range(config.instances_per_class)
        ]
    )


def generate_contours(
    config: ContourConfig, cache_dir: Path | None = None, workers: int | None = None
) -> Arrays:
    """Contour images uint8 (N, H, W) grey, labels int64 (N,) grouped by class, class names
    ('contour_0000'). Identical for a config whatever `workers` (processes; None: every core
    this process may use); with `cache_dir`, kept in one .npz per config and read back."""
    path = None
    if cache_dir is not None:
        path = synthetic_cache_path(Path(cache_dir), "contours", config, _CACHE_VERSION)
    return synthesize("contour", config, _draw_class, path, workers)
