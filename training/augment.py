"""Training-time augmentation, a pure function of (image, seed) so that runs and resumes repeat.

Every path ends in `app.preprocess.normalise`, the serving definition of [0, 1] -> mean/std.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2 as T
from PIL import Image
from torch import Tensor

from app.model_config import PreprocessConfig
from app.preprocess import normalise, preprocess

_MASK = (1 << 63) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one image's augmentation in one epoch (distinct for index < 2**31)."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0x85EBCA77 * (1 << 31) + index) & _MASK


class TrainTransform:
    """Random resized crop to the model's input, optional flip and RandAugment, normalise."""

    def __init__(
        self, spec: PreprocessConfig, hflip: bool, crop_scale: float, randaugment: int = 0
    ) -> None:
        self.spec = spec
        ops: list[torch.nn.Module] = [
            T.RandomResizedCrop(
                spec.crop, scale=(crop_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC
            )
        ]
        if hflip:
            ops.append(T.RandomHorizontalFlip())
        if randaugment:
            ops.append(T.RandAugment(num_ops=randaugment))
        self.ops = T.Compose(ops)

    def __call__(self, image: Image.Image, seed: int) -> Tensor:
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            torch.manual_seed(seed)
            image = self.ops(image)
        return torch.from_numpy(normalise(image, self.spec))


def eval_transform(image: Image.Image, spec: PreprocessConfig) -> Tensor:
    """Exactly the service's preprocessing."""
    return torch.from_numpy(preprocess(image, spec))


def mixup(
    images: Tensor, targets: Tensor, num_classes: int, alpha: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Mix each image with a partner of the batch: (mixed images, soft targets)."""
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(len(images))).to(images.device)
    one_hot = torch.nn.functional.one_hot(targets, num_classes).to(images.dtype)
    return (
        lam * images + (1 - lam) * images[order],
        lam * one_hot + (1 - lam) * one_hot[order],
    )
