"""A fixed number of optimizer steps on images held in memory as uint8 arrays.

The experiment's runs differ only in their initial weights, so everything else is one function:
AdamW (no decay on biases, norms, embeddings; `training.loop.make_optimizer`), linear warm-up
and cosine decay (`training.schedule.lr_at`), gradient clipping at 1, random shifts of up to
`shift` pixels (the only augmentation: digits and outlines keep their class under a shift, not
under a flip or a crop), a batch order drawn from the seed. Budgets are counted in steps, not
epochs, so 10 and 50 shots and every initialisation get the same number of updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import TrainConfig
from training.loop import make_optimizer
from training.schedule import lr_at

MIN_LR = 1e-5


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: everything but the data and the initial weights."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup: float = 0.1  # share of the steps
    shift: int = 2  # pixels


def to_inputs(images: np.ndarray | Tensor) -> Tensor:
    """uint8 (B, H, W) -> float (B, 1, H, W) in [-1, 1], as the service scales (mean = std =
    0.5, `training.preprocessing`)."""
    x = torch.as_tensor(images).float().div_(255.0).unsqueeze(1)
    return x.sub_(0.5).div_(0.5)


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each image moved by its own (dy, dx) in [-shift, shift], black (-1) where it left."""
    if shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b)[:, None, None, None]
    channel = torch.arange(c)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def batch_order(count: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """(steps, batch_size) indices: shuffled passes over the images, one after another."""
    rng = np.random.default_rng([seed, 0xBA7C])
    needed = steps * batch_size
    passes = [rng.permutation(count) for _ in range(-(-needed // count))]
    return np.concatenate(passes)[:needed].reshape(steps, batch_size)


def fit(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, recipe: Recipe, seed: int
) -> float:
    """Train `model` in place for `recipe.steps` steps; returns the last 10% of steps' mean
    training accuracy (a check that it learned what it saw)."""
    if len(images) < 1 or len(images) != len(labels):
        raise ValueError(f"{len(images)} images and {len(labels)} labels")
    config = TrainConfig(
        optimizer="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay, momentum=0.9
    )
    optimizer = make_optimizer(model, config)
    warmup = round(recipe.warmup * recipe.steps)
    order = batch_order(len(images), recipe.steps, recipe.batch_size, seed)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout, if a network has any
    x_all, y_all = to_inputs(images), torch.as_tensor(labels)
    tail = max(1, recipe.steps // 10)
    hits = seen = 0
    model.train()
    for step, indices in enumerate(order):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe.lr, MIN_LR, warmup, recipe.steps)
        index = torch.from_numpy(indices)
        x = random_shift(x_all[index], recipe.shift, generator)
        y = y_all[index]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= recipe.steps - tail:
            hits += int((logits.argmax(-1) == y).sum())
            seen += len(y)
    return hits / max(1, seen)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 on unshifted images, in eval mode."""
    model.eval()
    hits = 0
    for start in range(0, len(images), batch):
        logits = model(to_inputs(images[start : start + batch]))
        hits += int((logits.argmax(-1) == torch.as_tensor(labels[start : start + batch])).sum())
    return hits / len(images)
