"""Image -> model input, the one definition that serving and training's evaluation share.

Pillow and numpy only (no torch): resize the shorter side to `spec.resize`, centre-crop
`spec.crop`, 8-bit RGB, scale to [0, 1], normalise by mean and std.

The resize-then-crop is computed, not done: only the source box the crop covers, plus the
resampling filter's reach around it, is converted to 8 bits and resampled, straight to the
crop's size. So the work and memory of an image are bounded by the model's input, not by the
image's size or shape (a 200000 x 1 PNG costs what a thumbnail does), and the tensors are those
of resizing the whole image and cropping, within resampling noise (docs/serving.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.model_config import Interpolation, PreprocessConfig

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in an image's pixels
Region = tuple[int, int, int, int]  # the same, whole pixels
Size = tuple[int, int]  # width, height

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# How far each filter reaches, in output pixels (Pillow's supports); a downscale widens it.
_SUPPORT: dict[Interpolation, float] = {
    "nearest": 0.5,
    "box": 0.5,
    "bilinear": 1.0,
    "hamming": 1.0,
    "bicubic": 2.0,
    "lanczos": 3.0,
}
_STRIP_PIXELS = 1 << 20  # high-bit-depth greys are brought to 8 bits this many pixels at a time


def crop_box(size: Size, spec: PreprocessConfig) -> Box:
    """The region of an image of `size` that the model sees: the centre crop of the image
    resized to `spec.resize` on its shorter side (grown first if the crop would not fit)."""
    width, height = size
    scale = spec.resize / min(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    crop_h, crop_w = spec.crop
    if new_w < crop_w or new_h < crop_h:
        grow = max(crop_w / new_w, crop_h / new_h)
        new_w, new_h = max(crop_w, round(new_w * grow)), max(crop_h, round(new_h * grow))
    left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)


def scale_box(box: Box, from_size: Size, to_size: Size) -> Box:
    """`box` in the pixels of the same image at another size."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def resize_and_crop(image: Image.Image, spec: PreprocessConfig) -> Image.Image:
    """The model's view of any Pillow image: 8-bit RGB, `spec.crop` (height, width)."""
    crop_h, crop_w = spec.crop
    box = crop_box(image.size, spec)
    wide_grey = _wide_grey_range(image)  # decided on the whole image, not on the region
    whole = (round(box[0]), round(box[1]), round(box[2]), round(box[3]))
    if whole == box and (whole[2] - whole[0], whole[3] - whole[1]) == (crop_w, crop_h):
        resized = to_8bit(image.crop(whole), wide_grey)  # no resampling: a plain crop, exactly
    else:
        region = _filter_reach(box, image.size, (crop_w, crop_h), spec.interpolation)
        part = image if region == (0, 0, *image.size) else image.crop(region)
        local = (box[0] - region[0], box[1] - region[1], box[2] - region[0], box[3] - region[1])
        resized = to_8bit(part, wide_grey).resize(
            (crop_w, crop_h), _RESAMPLE[spec.interpolation], box=local
        )
    return resized.convert("RGB") if resized.mode != "RGB" else resized


def _filter_reach(box: Box, size: Size, out: Size, interpolation: Interpolation) -> Region:
    """The integer region of the source that resampling `box` to `out` reads."""
    edges: list[int] = []
    for lo, hi, n, limit in ((box[0], box[2], out[0], size[0]), (box[1], box[3], out[1], size[1])):
        reach = _SUPPORT[interpolation] * max((hi - lo) / n, 1.0) + 1  # +1: rounding
        edges += [max(0, math.floor(lo - reach)), min(limit, math.ceil(hi + reach))]
    return (edges[0], edges[2], edges[1], edges[3])


def _wide_grey_range(image: Image.Image) -> bool:
    """32-bit integer greys hold 16-bit data as often as 8-bit: values above 255 anywhere in
    the image mean 16-bit, brought to 8 bits by its top byte."""
    if image.mode != "I":
        return False
    highest = image.getextrema()[1]
    return isinstance(highest, int | float) and highest > 255


def to_8bit(image: Image.Image, wide_grey: bool | None = None) -> Image.Image:
    """Any Pillow mode -> "L" (greys) or "RGB", 8 bits a channel. Greys stay one band, as
    resampling them and then making RGB gives the same pixels for a third of the work; 16-bit
    greys keep their top 8 bits; alpha is dropped; a transparent palette goes via RGBA."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode.startswith("I;16"):
        return _grey_strips(image, lambda pixels: (pixels >> 8).astype(np.uint8))
    if image.mode == "I":
        shift = _wide_grey_range(image) if wide_grey is None else wide_grey
        return _grey_strips(
            image,
            lambda pixels: np.clip(pixels >> 8 if shift else pixels, 0, 255).astype(np.uint8),
        )
    if image.mode == "F":
        return _grey_strips(
            image, lambda pixels: np.clip(np.nan_to_num(pixels), 0, 255).astype(np.uint8)
        )
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # via RGBA, as Pillow asks for transparent palettes
    return image.convert("RGB")


def _grey_strips(image: Image.Image, to_bytes: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """A one-band image of any depth -> "L", a strip of rows at a time (bounded extra memory)."""
    width, height = image.size
    out = Image.new("L", image.size)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        out.paste(Image.fromarray(to_bytes(np.asarray(strip))), (0, top))
    return out


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
