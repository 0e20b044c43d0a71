"""Context for the fine-tuned numbers: 1-NN on raw pixels, and linear probes (logistic
regression on frozen features) of each initialisation before any fine-tuning."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from experiments.formula_pretraining.digits import Digits, draw_shots
from experiments.formula_pretraining.nets import embed
from experiments.formula_pretraining.steps import to_inputs


def nearest_neighbour(digits: Digits, shots: int, seed: int) -> float:
    """Test top-1 of 1-NN (Euclidean, raw pixels) on one seed's shots."""
    x, y = digits.take(draw_shots(digits, shots, seed))
    tx, ty = digits.take(digits.test)
    train = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float32)
    test = torch.as_tensor(tx.reshape(len(tx), -1), dtype=torch.float32)
    nearest = torch.cdist(test, train).argmin(dim=1).numpy()
    return float((y[nearest] == ty).mean())


@torch.no_grad()
def features(model: nn.Module, images: np.ndarray, batch: int = 500) -> np.ndarray:
    model.eval()
    return torch.cat(
        [embed(model, to_inputs(images[i : i + batch])) for i in range(0, len(images), batch)]
    ).numpy()


def linear_probe(
    features: np.ndarray, labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> float:
    """Test top-1 of a logistic regression on standardised frozen features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(features, labels)
    return float((probe.predict(test_features) == test_labels).mean())
