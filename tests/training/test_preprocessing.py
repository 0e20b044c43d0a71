"""Training feeds the model the service's preprocessing; augmentation repeats by seed."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.preprocess import preprocess
from training.augment import TrainTransform, eval_transform, sample_seed
from training.config import TrainConfig
from training.data.loader import EvalImages
from training.data.sources import load_source
from training.preprocessing import preprocess_config_for


def test_preprocess_config_for() -> None:
    spec = preprocess_config_for(32)
    assert spec.resize == 32 and spec.crop == (32, 32)
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert preprocess_config_for(224, crop_fraction=0.875).resize == 256


def test_evaluation_images_are_the_services() -> None:
    split = load_source("digits", TrainConfig(), image_size=32)
    spec = preprocess_config_for(32)
    image, label = EvalImages(split.val, spec)[3]
    expected = preprocess(split.val.image(3), spec)
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert np.array_equal(image.numpy(), expected)
    assert label == split.val.targets[3]


def test_train_transform_is_a_function_of_the_seed() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    spec = preprocess_config_for(32)
    transform = TrainTransform(spec, hflip=True, crop_scale=0.3, randaugment=2)
    state = torch.get_rng_state()
    a, b = transform(image, 1), transform(image, 1)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, transform(image, 2))
    assert sample_seed(0, 0, 1) != sample_seed(0, 1, 0)


def test_full_crop_without_flip_is_evaluation() -> None:
    """A crop of the whole image at aspect 1 is exactly the service's resize."""
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (8, 8), dtype=np.uint8))
    spec = preprocess_config_for(32)
    transform = TrainTransform(spec, hflip=False, crop_scale=1.0)
    for seed in range(20):  # whenever the random aspect lands on 1
        cropped = transform(image.convert("RGB"), seed)
        if torch.equal(cropped, eval_transform(image, spec)):
            return
    raise AssertionError("no full square crop matched the service's preprocessing")
