"""`attention=png`: the rollout drawn over the image as the client sent it.

The map covers the crop box the model saw (bilinear, between cell centres, as the demo page
draws it in app/demo/heatmap.js); what the model did not see is dimmed.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from app.postprocess import scale_attention
from app.preprocess import Box, to_8bit

# The demo page uses the same ramp: dark blue, blue, cyan, yellow, red, dark red.
_STOPS = np.array(
    [[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]],
    dtype=np.float64,
)
HEAT_ALPHA = 0.5  # weight of the colour over the image inside the crop
DIM_OUTSIDE = 0.35  # brightness left where the model did not look


def colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] (H, W) -> RGB uint8 (H, W, 3) on the ramp."""
    position = np.clip(values, 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_STOPS) - 2)
    frac = (position - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).astype(np.uint8)


def sample_bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`grid` (gh, gw) at fractional cell coordinates (cell centres are integers), clamped at
    the edges: (len(rows), len(cols))."""
    gh, gw = grid.shape
    rows, cols = np.clip(rows, 0, gh - 1), np.clip(cols, 0, gw - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, gh - 1), np.minimum(c0 + 1, gw - 1)
    fr, fc = (rows - r0)[:, None], cols - c0
    along = grid[:, c0] * (1 - fc) + grid[:, c1] * fc  # (gh, W)
    return along[r0] * (1 - fr) + along[r1] * fr


def fit_long_side(image: Image.Image, max_side: int) -> Image.Image:
    """`image` in 8 bits ("L" or "RGB"), shrunk to a long side of at most `max_side`."""
    image = to_8bit(image)
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def render_heatmap(image: Image.Image, attention: np.ndarray, crop: Box) -> Image.Image:
    """`image` with the map (gh, gw), scaled to max 1, over `crop` (in `image`'s pixels): the
    pixels whose centres lie in the crop are blended with the colour, the others dimmed."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = crop
    gh, gw = attention.shape
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    inside_x = (centres_x >= x0) & (centres_x < x1)
    inside_y = (centres_y >= y0) & (centres_y < y1)
    out = pixels * DIM_OUTSIDE
    if inside_x.any() and inside_y.any():
        cols = (centres_x[inside_x] - x0) * gw / (x1 - x0) - 0.5
        rows = (centres_y[inside_y] - y0) * gh / (y1 - y0) - 0.5
        heat = colormap(sample_bilinear(scale_attention(attention), rows, cols))
        region = np.ix_(inside_y, inside_x)
        out[region] = pixels[region] * (1 - HEAT_ALPHA) + heat * HEAT_ALPHA
    return Image.fromarray(np.rint(out).astype(np.uint8), "RGB")


def heatmap_png(image: Image.Image, attention: np.ndarray, crop: Box) -> str:
    """Base64 PNG of `render_heatmap`."""
    buffer = io.BytesIO()
    render_heatmap(image, attention, crop).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
