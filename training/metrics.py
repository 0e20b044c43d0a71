"""Classification metrics from logits: top-k hits, and confusion-matrix summaries."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def topk_correct(logits: Tensor, targets: Tensor, k: int) -> Tensor:
    """How many targets are among the k highest logits (k capped at the number of classes), as
    a tensor on the logits' device: reading it is left to the caller (a device sync)."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return (top == targets[:, None]).any(dim=-1).sum()


def topk_hits(logits: Tensor, targets: Tensor, k: int) -> int:
    """`topk_correct` as a Python int."""
    return int(topk_correct(logits, targets, k))


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """(true, predicted) counts, int64 (C, C)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN where a class has no images)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Mean cross-entropy against probability targets (mixup)."""
    return torch.sum(-soft_targets * torch.log_softmax(logits, dim=-1), dim=-1).mean()
