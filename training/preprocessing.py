"""The preprocessing a trained model expects, as the `config.json` of its export records it."""

from __future__ import annotations

from app.model_config import DEFAULT_INTERPOLATION, DEFAULT_MEAN, DEFAULT_STD, PreprocessConfig


def preprocess_config_for(image_size: int, crop_fraction: float = 1.0) -> PreprocessConfig:
    """Resize the shorter side to image_size / crop_fraction, centre-crop image_size, scale to
    [-1, 1] (mean = std = 0.5). Training's evaluation and the service both use exactly this."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], not {crop_fraction}")
    return PreprocessConfig(
        resize=round(image_size / crop_fraction),
        crop=(image_size, image_size),
        interpolation=DEFAULT_INTERPOLATION,
        mean=DEFAULT_MEAN,
        std=DEFAULT_STD,
    )
