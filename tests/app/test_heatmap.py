"""app/heatmap.py: the map over the crop box, the rest dimmed; upsampling as Pillow's bilinear
resize does it; images brought to 8 bits and to the long side asked for."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.heatmap import (
    DIM_OUTSIDE,
    HEAT_ALPHA,
    colormap,
    fit_long_side,
    heatmap_png,
    render_heatmap,
    sample_bilinear,
)

GREY = 120


def test_sampling_agrees_with_pillows_bilinear_resize() -> None:
    grid = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    height, width = 61, 38
    rows = (np.arange(height) + 0.5) * 7 / height - 0.5
    cols = (np.arange(width) + 0.5) * 5 / width - 0.5
    ours = sample_bilinear(grid.astype(np.float64), rows, cols)
    pillow = np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.BILINEAR))
    np.testing.assert_allclose(ours, pillow, atol=1e-5)


def test_the_map_covers_the_crop_and_the_rest_is_dimmed() -> None:
    image = Image.new("RGB", (100, 60), (GREY, GREY, GREY))
    attention = np.full((3, 3), 0.2)
    attention[0, 2] = 0.8  # top right cell: the maximum, scaled to 1
    pixels = np.asarray(render_heatmap(image, attention, (20.0, 0.0, 80.0, 60.0)), dtype=int)

    dimmed = round(GREY * DIM_OUTSIDE)
    assert (pixels[:, :20] == dimmed).all() and (pixels[:, 80:] == dimmed).all()
    inside = pixels[:, 20:80]
    assert (inside != dimmed).any(axis=2).all(), "every pixel of the crop is coloured"
    hottest = np.rint(GREY * (1 - HEAT_ALPHA) + colormap(np.array([1.0]))[0] * HEAT_ALPHA)
    assert (pixels[0, 79] == hottest).all()  # the crop's top right corner: cell (0, 2)
    coolest = np.rint(GREY * (1 - HEAT_ALPHA) + colormap(np.array([0.25]))[0] * HEAT_ALPHA)
    assert (pixels[59, 20] == coolest).all()  # its bottom left corner: cell (2, 0)


def test_a_crop_box_between_pixels() -> None:
    image = Image.new("L", (10, 10), GREY)
    pixels = np.asarray(render_heatmap(image, np.ones((2, 2)), (2.5, 2.5, 7.5, 7.5)), dtype=int)
    coloured = (pixels != round(GREY * DIM_OUTSIDE)).any(axis=2)
    assert coloured[2:7, 2:7].all() and coloured.sum() == 25  # centres 2.5 .. 6.5


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [
        ((2000, 1000), "I;16", (512, 256)),
        ((300, 900), "RGBA", (171, 512)),
        ((28, 28), "L", (28, 28)),
    ],
)
def test_fit_long_side(size: tuple[int, int], mode: str, expected: tuple[int, int]) -> None:
    fitted = fit_long_side(Image.new(mode, size), 512)
    assert fitted.size == expected and fitted.mode in ("L", "RGB")


def test_heatmap_png_is_a_png_of_the_image_size() -> None:
    png = heatmap_png(Image.new("L", (40, 30)), np.ones((4, 4)), (5.0, 0.0, 35.0, 30.0))
    heatmap = Image.open(io.BytesIO(base64.b64decode(png)))
    assert heatmap.format == "PNG" and heatmap.size == (40, 30) and heatmap.mode == "RGB"
