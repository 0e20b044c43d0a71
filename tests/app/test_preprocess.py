"""The preprocessing resamples only the region the model sees: the same tensors as resizing the
whole image and cropping (within resampling noise), at a cost bounded by the model's input."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
from imagefiles import photo
from PIL import Image

from app.model_config import PreprocessConfig
from app.preprocess import crop_box, normalise, preprocess, scale_box, to_8bit

ONE_LEVEL = 1 / 255 / 0.5  # one 8-bit step after normalising with std 0.5
SPECS = [
    PreprocessConfig(resize=32, crop=(32, 32)),
    PreprocessConfig(resize=256, crop=(224, 224)),
    PreprocessConfig(resize=40, crop=(32, 32), interpolation="bilinear"),
    PreprocessConfig(resize=40, crop=(32, 32), interpolation="lanczos"),
]


def whole_image_reference(image: Image.Image, spec: PreprocessConfig) -> np.ndarray:
    """The definition, done literally: convert, resize the whole image, crop the centre."""
    image = to_8bit(image).convert("RGB")
    scale = spec.resize / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling[spec.interpolation.upper()])
    crop_h, crop_w = spec.crop
    left, top = (size[0] - crop_w) // 2, (size[1] - crop_h) // 2
    return normalise(image.crop((left, top, left + crop_w, top + crop_h)), spec)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.resize}-{s.interpolation}")
def test_same_tensors_as_resizing_the_whole_image(spec: PreprocessConfig) -> None:
    for index, size in enumerate([(640, 480), (480, 640), (37, 53), (224, 224), (1200, 31)]):
        for mode in ("RGB", "L", "RGBA", "P"):
            image = photo(*size, seed=index).convert(mode)
            got, expected = preprocess(image, spec), whole_image_reference(image, spec)
            assert got.shape == expected.shape
            levels = np.abs(got - expected) / ONE_LEVEL
            # Rounding of Pillow's 8-bit intermediate (its box is single precision): 2 levels on
            # smooth images, up to 6 at some pixels of a dithered palette image.
            assert levels.max() <= 8 and levels.mean() <= 0.5, (size, mode)


def test_crop_box_is_the_region_the_model_sees() -> None:
    spec = PreprocessConfig(resize=32, crop=(32, 32))
    assert crop_box((64, 32), spec) == (16.0, 0.0, 48.0, 32.0)  # the centre square
    assert crop_box((32, 96), spec) == (0.0, 32.0, 32.0, 64.0)
    assert crop_box((200_000, 1), spec) == pytest.approx((99_999.5, 0.0, 100_000.5, 1.0))
    assert scale_box((1.0, 2.0, 3.0, 4.0), (10, 10), (20, 5)) == (2.0, 1.0, 6.0, 2.0)


@pytest.mark.parametrize("size", [(200_000, 1), (1, 200_000), (20_000_000, 1)])
def test_extreme_aspect_ratios_cost_a_thumbnail(size: tuple[int, int]) -> None:
    """Resizing the whole 200000 x 1 image to a shorter side of 224 would be 45 G pixels."""
    image = Image.new("1", size)
    spec = PreprocessConfig(resize=224, crop=(224, 224))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    tensor = preprocess(image, spec)
    assert tensor.shape == (3, 224, 224)
    assert time.perf_counter() - started < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000  # the image itself is 20 MB at most here; nothing near its resize


def test_high_bit_depth_is_converted_in_strips_to_the_same_pixels() -> None:
    ramp = (np.arange(300 * 5000, dtype=np.uint64) % 65536).astype(np.uint16).reshape(5000, 300)
    image = Image.fromarray(ramp)  # I;16, 5 strips of 2**20 pixels
    expected = (ramp >> 8).astype(np.uint8)
    assert np.array_equal(np.asarray(to_8bit(image)), expected)
    wide = Image.fromarray(ramp.astype(np.int32))  # mode I holding 16-bit data
    assert np.array_equal(np.asarray(to_8bit(wide)), expected)
