"""Model outputs -> answers: softmax, top-k, attention scaled to max 1 (app/heatmap.py draws it)."""

from __future__ import annotations

import numpy as np


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
