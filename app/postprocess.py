"""Model outputs -> answers: softmax, top-k, attention scaled to max 1, PNG heatmap."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most probable (index, probability) of one image, most probable first
    (ties: lower index first)."""
    k = min(k, probabilities.shape[-1])
    order = np.lexsort((np.arange(probabilities.shape[-1]), -probabilities))[:k]
    return [(int(i), float(probabilities[i])) for i in order]


def scale_attention(attention: np.ndarray) -> np.ndarray:
    """The rollout map (gh, gw) divided by its maximum, so that the maximum is 1."""
    attention = np.nan_to_num(attention.astype(np.float64))
    peak = attention.max()
    return attention / peak if peak > 0 else np.zeros_like(attention)


def _colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] (H, W) -> RGB uint8 (H, W, 3): blue -> cyan -> yellow -> red, a jet-like ramp."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    stops = np.array(
        [[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]],
        dtype=np.float64,
    )
    position = v * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = position - low
    colours = stops[low[..., 0]] * (1 - frac) + stops[low[..., 0] + 1] * frac
    return colours.astype(np.uint8)


def heatmap_png(image: Image.Image, attention: np.ndarray, alpha: float = 0.5) -> str:
    """Base64 PNG: the scaled map (gh, gw), upsampled to the image, blended over it."""
    grid = Image.fromarray(scale_attention(attention).astype(np.float32), "F")
    upsampled = np.asarray(grid.resize(image.size, Image.Resampling.BILINEAR))
    overlay = Image.fromarray(_colormap(upsampled), "RGB")
    blended = Image.blend(image.convert("RGB"), overlay, alpha)
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
