"""FractalDB: synthetic pre-training images drawn from random iterated function systems.

Kataoka et al., "Pre-training without Natural Images" (ACCV 2020); Nakashima et al., "Can Vision
Transformers Learn without Natural Images?" (AAAI 2022). A category is a random IFS of 2-7
affine maps whose attractor fills at least 20% of a 512x512 canvas; its instances are the same
system with one parameter re-weighted, randomly flipped.

Drawing decides whether a small model can tell the classes apart. The paper draws random-colour
3x3 patches on 362x362 canvases; at 32 px that makes every fractal a blob covering half the image
and leaves the class only in an outline too coarse to learn from. So by default the points are
drawn white, one pixel each, at `supersample` times the size and box-downsampled: grey images
whose density shows the attractor's structure. `patch`, `color` and `supersample=1` restore the
paper's look.

Every random draw comes from a generator seeded by (seed, class) or (seed, class, instance), so
the arrays are identical bit for bit however many processes draw them.
"""

from __future__ import annotations

import logging
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
_CACHE_VERSION = 2

# Spawn keys keep the category search and each instance on independent random streams.
_SEARCH_STREAM = 0
_INSTANCE_STREAM = 1

# A chain this far from the origin has left any attractor for good: the system diverges.
_DIVERGED = 1e10

# An IFS, (n_maps, 6): each row a, b, c, d, e, f of the map x' = a x + b y + e, y' = c x + d y + f.
Params = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Category:
    """One accepted FractalDB category: its IFS and the search that found it."""

    params: Params  # (n_maps, 6)
    filling_rate: float  # on the search canvas, >= the threshold
    tries: int  # systems drawn until this one was accepted


@dataclass(frozen=True)
class FractalConfig:
    """Everything that decides the images; its JSON (with the version) is the cache key.

    Category search: random IFS of min_maps..max_maps maps, kept when `search_points`
    chaos-game points fill at least `fill_threshold` of a `fill_canvas` square. Instances: one
    parameter column times a random entry of `weights`, `num_points` points (None: about two
    per pixel of the drawing canvas, at most 100k), randomly flipped (`flip`), `margin` of the
    side left empty.
    """

    num_classes: int = 100
    instances_per_class: int = 100
    image_size: int = 32
    seed: int = 0
    min_maps: int = 2
    max_maps: int = 7
    fill_threshold: float = 0.2
    fill_canvas: int = 512  # the original search canvas, 512x512 with a 6-pixel pad
    search_points: int = 100_000
    num_points: int | None = None  # per instance; None: about two per canvas pixel
    weights: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
    patch: bool = False  # each point a random 3x3 pattern (the paper), not one pixel
    color: bool = False  # each point a random bright colour (the paper), not white
    supersample: int = 4  # drawn at this many times the size, then box-downsampled
    flip: bool = True
    margin: float = 0.05  # fraction of the side left empty on each edge
    chains: int = 1024
    burn_in: int = 20
    max_tries: int = 100_000

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.instances_per_class < 1:
            raise ValueError(
                f"need at least one class and instance, got {self.num_classes}, "
                f"{self.instances_per_class}"
            )
        if self.image_size < 4:
            raise ValueError(f"image_size must be at least 4, got {self.image_size}")
        if not 1 <= self.min_maps <= self.max_maps:
            raise ValueError(
                f"need 1 <= min_maps <= max_maps, got {self.min_maps}, {self.max_maps}"
            )
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")

    @property
    def canvas(self) -> int:
        """The side the points are drawn at."""
        return self.image_size * self.supersample


def map_probabilities(params: Params) -> npt.NDArray[np.float64]:
    """Chaos-game probability of each map, proportional to |det| of its 2x2 matrix, so a map
    that covers more area gets visited more and the attractor is sampled evenly."""
    det = np.abs(params[:, 0] * params[:, 3] - params[:, 1] * params[:, 2])
    total = det.sum()
    if total <= 0:  # every map collapses the plane onto a line: any choice is as good
        return np.full(len(params), 1.0 / len(params))
    return det / total


def sample_ifs(rng: np.random.Generator, min_maps: int = 2, max_maps: int = 7) -> Params:
    """A random system: min_maps..max_maps maps, each of their 6 parameters uniform in
    [-1, 1] (many such systems diverge; the filling-rate search rejects them)."""
    n = int(rng.integers(min_maps, max_maps + 1))
    return rng.uniform(-1.0, 1.0, size=(n, 6))


def chaos_game(
    params: Params,
    num_points: int,
    rng: np.random.Generator,
    *,
    chains: int = 1024,
    burn_in: int = 20,
) -> npt.NDArray[np.float64]:
    """Points (num_points, 2) on the attractor of `params` by random iteration.

    One chain is sequential, but many chains run side by side sample the same attractor, so
    the loop is over `num_points / chains` steps of a vector op instead of `num_points`
    scalar ones. The first `burn_in` steps of every chain, before it reaches the attractor,
    are dropped. A diverging system returns all-NaN points.
    """
    chains = max(1, min(chains, num_points))
    steps = -(-num_points // chains)
    which = rng.choice(len(params), size=(burn_in + steps, chains), p=map_probabilities(params))
    coef = np.take(params.T, which, axis=1)  # (6, T, chains): each coefficient contiguous
    x = np.zeros(chains)
    y = np.zeros(chains)
    out = np.empty((2, steps, chains))  # x and y apart, so each column is contiguous
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(burn_in + steps):
            a, b, c, d, e, f = coef[:, t]
            x, y = a * x + b * y + e, c * x + d * y + f
            if t % 16 == 15 and not np.abs(x).max() < _DIVERGED:  # also catches NaN
                return np.full((num_points, 2), np.nan)
            if t >= burn_in:
                out[0, t - burn_in] = x
                out[1, t - burn_in] = y
    points = out.reshape(2, -1)[:, :num_points].T
    if not np.isfinite(points).all() or np.abs(points).max() >= _DIVERGED:
        return np.full((num_points, 2), np.nan)
    return points


def _to_pixels(
    points: npt.NDArray[np.float64], size: int, pad: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows and columns of `points` on a size x size canvas, each axis stretched on its own to
    span [pad, size - 1 - pad] as FractalDB draws; y points up."""
    axes = []
    for v in (points[:, 0], points[:, 1]):  # per column: numpy reduces (N, 2) along N slowly
        lo = v.min()
        span = v.max() - lo
        scale = (size - 1 - 2 * pad) / span if span > 0 else 0.0  # degenerate: onto the pad
        axes.append(np.rint(pad + (v - lo) * scale).astype(np.int64))
    return size - 1 - axes[1], axes[0]


def filling_rate(points: npt.NDArray[np.float64], canvas_size: int = 512, pad: int = 6) -> float:
    """Fraction of the pixels of a canvas_size x canvas_size canvas hit by at least one point
    when the points are stretched to fill it (the FractalDB acceptance test, 512 and 6 there).

    The rate depends on how many points are drawn per pixel, so compare rates only at the same
    point count and canvas: the original search draws 100k points on 512x512. Non-finite
    points (a diverging system) fill nothing.
    """
    if len(points) == 0 or not np.isfinite(points).all():
        return 0.0
    rows, cols = _to_pixels(points, canvas_size, pad)
    hit = np.zeros(canvas_size * canvas_size, dtype=bool)
    hit[rows * canvas_size + cols] = True
    return float(np.count_nonzero(hit)) / hit.size


def _search_rng(seed: int, class_index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(_SEARCH_STREAM, class_index))
    )


def _instance_rng(seed: int, class_index: int, instance: int) -> np.random.Generator:
    key = (_INSTANCE_STREAM, class_index, instance)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def search_category(config: FractalConfig, class_index: int) -> Category:
    """The category `class_index` of the database `config` describes: draw systems until one
    fills at least `fill_threshold` of the canvas.

    Each class searches on its own stream, so class k is the same whether 10 or 1000 classes
    are generated, and in whichever process.
    """
    c = config
    rng = _search_rng(c.seed, class_index)
    for tries in range(1, c.max_tries + 1):
        params = sample_ifs(rng, c.min_maps, c.max_maps)
        points = chaos_game(params, c.search_points, rng, chains=c.chains, burn_in=c.burn_in)
        rate = filling_rate(points, c.fill_canvas)
        if rate >= c.fill_threshold:
            return Category(params=params, filling_rate=rate, tries=tries)
    raise RuntimeError(
        f"no system of class {class_index} filled {c.fill_threshold} of the canvas "
        f"in {c.max_tries} tries"
    )


def weight_variants(weights: tuple[float, ...]) -> list[tuple[int, float]]:
    """FractalDB's intra-class variants as (parameter column, weight): the system itself, then
    each of the 6 parameters (a..f, in every map at once) times each weight other than 1."""
    scaled = [w for w in weights if w != 1.0]
    return [(0, 1.0)] + [(j, w) for j in range(6) for w in scaled]


def _points_per_image(config: FractalConfig) -> int:
    if config.num_points is not None:
        return config.num_points
    # About two points per pixel fill a small image; 100k is the paper's count at full size.
    return min(100_000, max(2_000, 2 * config.canvas * config.canvas))


def render(
    points: npt.NDArray[np.float64],
    image_size: int,
    rng: np.random.Generator,
    *,
    patch: bool = True,
    color: bool = True,
    margin: float = 0.05,
) -> npt.NDArray[np.uint8]:
    """Draw points into an (image_size, image_size, 3) uint8 image on black.

    patch: each point stamps a random 3x3 pattern (centre always on, each neighbour on with
    probability 1/2) instead of one pixel. color: each point gets a random bright colour and,
    as when drawing one point after another, the last point on a pixel wins; otherwise every
    point is white.
    """
    pad = max(1, round(margin * image_size))
    rows, cols = _to_pixels(points, image_size, pad)
    n = len(points)
    if patch:
        dr, dc = np.divmod(np.arange(9), 3)
        on = rng.random((n, 9)) < 0.5
        on[:, 4] = True  # the centre, so every point shows
        rows = np.clip(rows[:, None] + dr - 1, 0, image_size - 1)[on]
        cols = np.clip(cols[:, None] + dc - 1, 0, image_size - 1)[on]
        owner = np.nonzero(on)[0]  # the point each drawn pixel belongs to, in drawing order
    else:
        owner = np.arange(n)
    flat = rows * image_size + cols
    image = np.zeros((image_size * image_size, 3), dtype=np.uint8)
    if color:
        colors = rng.integers(64, 256, size=(n, 3), dtype=np.uint8)
        # Keep the last write per pixel explicitly: numpy leaves repeated-index assignment
        # order unspecified, and the result must be the same everywhere.
        order = np.argsort(flat, kind="stable")
        sorted_flat = flat[order]
        last = np.ones(len(flat), dtype=bool)
        last[:-1] = sorted_flat[1:] != sorted_flat[:-1]
        image[sorted_flat[last]] = colors[owner[order[last]]]
    else:
        image[flat] = 255
    return image.reshape(image_size, image_size, 3)


def draw_instance(
    config: FractalConfig, params: Params, class_index: int, instance: int
) -> npt.NDArray[np.uint8]:
    """Instance `instance` of the class with system `params`: (H, W, 3) uint8 on black."""
    c = config
    rng = _instance_rng(c.seed, class_index, instance)
    variants = weight_variants(c.weights)
    column, weight = variants[int(rng.integers(len(variants)))]
    flip = int(rng.integers(4)) if c.flip else 0
    n = _points_per_image(c)
    weighted = params.copy()
    weighted[:, column] *= weight
    points = chaos_game(weighted, n, rng, chains=c.chains, burn_in=c.burn_in)
    if not np.isfinite(points).all():  # the weight tipped the system into divergence
        points = chaos_game(params, n, rng, chains=c.chains, burn_in=c.burn_in)
    image = render(points, c.canvas, rng, patch=c.patch, color=c.color, margin=c.margin)
    image = box_downsample(image, c.supersample)
    if flip & 1:
        image = image[:, ::-1]
    if flip & 2:
        image = image[::-1]
    return np.ascontiguousarray(image)


def _draw_class(job: tuple[FractalConfig, int]) -> npt.NDArray[np.uint8]:
    """One category and all its instances, (instances, H, W, 3): the unit of work of a process."""
    config, class_index = job
    params = search_category(config, class_index).params
    return np.stack(
        [draw_instance(config, params, class_index, i) for i in range(config.instances_per_class)]
    )


def generate_fractaldb(
    config: FractalConfig, cache_dir: Path | None = None, workers: int | None = None
) -> Arrays:
    """A FractalDB: images uint8 (N, H, W, 3), labels int64 (N,), label names ('fractal_0000').

    N = num_classes * instances_per_class, grouped by class. Identical arrays for a config
    whatever `workers` (processes, one category at a time; None: every core this process may
    use). With `cache_dir`, the result is kept in one .npz per config and read back.
    """
    path = None if cache_dir is None else fractal_cache_path(Path(cache_dir), config)
    return synthesize("fractal", config, _draw_class, path, workers)


def fractal_cache_path(cache_dir: Path, config: FractalConfig) -> Path:
    """The cache file of `config`: one per distinct set of knobs."""
    return synthetic_cache_path(cache_dir, "fractaldb", config, _CACHE_VERSION)
