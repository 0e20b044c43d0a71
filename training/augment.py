"""Training-time augmentation, a pure function of (image, seed) so that runs and resumes repeat.

Every path ends in `app.preprocess.normalise`, the serving definition of [0, 1] -> mean/std.
"""

from __future__ import annotations

import math

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


def random_resized_crop(
    image: Image.Image, size: int, scale: tuple[float, float], rng: np.random.Generator
) -> Image.Image:
    """A random box of `scale` of the area and aspect 3/4..4/3 (Inception-style), resized to
    `size` x `size` (bicubic, as the service resizes); the centre square if none fits."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            break
    else:
        w = h = min(width, height)
        left, top = (width - w) // 2, (height - h) // 2
    box = (left, top, left + w, top + h)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


class TrainTransform:
    """Random resized crop to the model's input, optional flip and RandAugment, normalise."""

    def __init__(
        self, spec: PreprocessConfig, hflip: bool, crop_scale: float, randaugment: int = 0
    ) -> None:
        if spec.crop[0] != spec.crop[1]:
            raise ValueError(f"square model inputs only, not {spec.crop}")
        self.spec = spec
        self.hflip = hflip
        self.scale = (crop_scale, 1.0)
        self.randaugment = T.RandAugment(num_ops=randaugment) if randaugment else None

    def __call__(self, image: Image.Image, seed: int) -> Tensor:
        rng = np.random.default_rng(seed)
        image = random_resized_crop(image, self.spec.crop[0], self.scale, rng)
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.randaugment is not None:
            with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
                torch.manual_seed(seed)
                image = self.randaugment(image)
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
