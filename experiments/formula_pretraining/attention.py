"""Where a ViT looks, as a number: the share of its attention-rollout mass on patches that hold
ink (digit strokes), beside the share of patches that hold ink (what uniform attention gets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from experiments.formula_pretraining.steps import to_inputs
from model.rollout import cls_rollout_vector
from model.vit import VisionTransformer

INK = 128  # a pixel this bright or brighter is part of a stroke


def ink_patches(images: np.ndarray, patch: int) -> np.ndarray:
    """(B, gh, gw) bool: patches of uint8 (B, H, W) images with at least one ink pixel."""
    b, h, w = images.shape
    blocks = images.reshape(b, h // patch, patch, w // patch, patch)
    return np.asarray(blocks.max(axis=(2, 4)) >= INK)


@torch.no_grad()
def rollout_maps(model: VisionTransformer, images: np.ndarray, batch: int = 250) -> np.ndarray:
    """(B, gh, gw) attention rollout of the class token (mean head fusion), each map summing
    to 1 over the patches."""
    model.eval()
    maps = []
    for start in range(0, len(images), batch):
        _, attentions = model.forward_with_attention(to_inputs(images[start : start + batch]))
        row = cls_rollout_vector(attentions, model.config.grid_size)
        maps.append(row / row.sum(dim=(1, 2), keepdim=True))
    return torch.cat(maps).numpy()


def ink_share(model: VisionTransformer, images: np.ndarray) -> dict[str, float]:
    """Mean over `images` of the rollout mass on ink patches, and of the ink patches' share."""
    maps = rollout_maps(model, images)
    ink = ink_patches(images, model.config.patch_size)
    return {
        "ink_mass": float((maps * ink).sum(axis=(1, 2)).mean()),
        "ink_patches": float(ink.mean()),
    }


def plot_attention(
    models: dict[str, VisionTransformer],
    images: np.ndarray,
    labels: np.ndarray,
    path: Path,
    title: str,
) -> None:
    """Rows: the digits, then each model's rollout (scaled per image to its maximum) under the
    digit's outline, titled with the model's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(models) + 1
    fig, axes = plt.subplots(
        rows, len(images), figsize=(1.6 * len(images) + 0.8, 1.8 * rows), squeeze=False
    )
    side = images.shape[1]
    extent = (-0.5, side - 0.5, side - 0.5, -0.5)
    for c in range(len(images)):
        axes[0][c].imshow(images[c], cmap="gray", vmin=0, vmax=255)
        axes[0][c].set_title(f"label {labels[c]}", fontsize=9)
    axes[0][0].set_ylabel("digit", fontsize=9)
    for r, (name, model) in enumerate(models.items(), start=1):
        maps = rollout_maps(model, images)
        with torch.no_grad():
            predictions = model(to_inputs(images)).argmax(-1).tolist()
        for c in range(len(images)):
            ax = axes[r][c]
            ax.imshow(maps[c] / maps[c].max(), cmap="inferno", vmin=0, vmax=1, extent=extent)
            ax.contour(images[c], levels=[INK], colors="cyan", linewidths=0.7)
            right = predictions[c] == labels[c]
            ax.set_title(f"pred {predictions[c]}", fontsize=9, color="green" if right else "red")
        axes[r][0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
