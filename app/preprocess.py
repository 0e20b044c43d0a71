"""Image -> model input, the one definition that serving and training's evaluation share.

Pillow and numpy only (no torch): RGB, resize the shorter side, centre-crop, scale to [0, 1],
normalise by mean and std.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.model_config import PreprocessConfig

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_and_crop(image: Image.Image, spec: PreprocessConfig) -> Image.Image:
    """RGB image with its shorter side resized to `spec.resize`, centre-cropped to `spec.crop`."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    width, height = image.size
    scale = spec.resize / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, _RESAMPLE[spec.interpolation])
    crop_h, crop_w = spec.crop
    if new_size[0] < crop_w or new_size[1] < crop_h:
        # A crop larger than the resized image: grow the image to cover it first.
        scale = max(crop_w / new_size[0], crop_h / new_size[1])
        new_size = (
            max(crop_w, round(new_size[0] * scale)),
            max(crop_h, round(new_size[1] * scale)),
        )
        image = image.resize(new_size, _RESAMPLE[spec.interpolation])
    left = (new_size[0] - crop_w) // 2
    top = (new_size[1] - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def normalise(image: Image.Image, spec: PreprocessConfig) -> np.ndarray:
    """RGB image -> float32 (3, H, W): scaled to [0, 1], minus mean, over std."""
    pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W), a view
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    out = np.empty(pixels.shape, dtype=np.float32)  # transposed as bytes, computed in place
    np.divide(pixels, np.float32(255.0), out=out)
    out -= mean
    out /= std
    return out


def preprocess(image: Image.Image, spec: PreprocessConfig) -> np.ndarray:
    """Any Pillow image -> float32 (3, crop_h, crop_w), ready to batch."""
    return normalise(resize_and_crop(image, spec), spec)
