"""Bytes -> image: the format told by the bytes and held to an allowlist, the pixel limit checked
before anything is decoded (weighted by bytes per pixel, TIFF tiles and strips included), JPEG
draft mode for large images, the first frame of animations, EXIF orientation.

Conversion to RGB is preprocessing's, done on the region the model sees (app/preprocess.py).
Error messages say what is wrong with the image, never what the server runs.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageMode, ImageOps, TiffImagePlugin

from app.errors import EmptyImage, ImageTooLarge, InvalidImage
from app.settings import DEFAULT_IMAGE_FORMATS

# Pillow's own bomb checks (in Image.open, in containers such as ICO) refuse at its limit, not
# at twice it: its warning becomes an error. The limit itself is ours (follow_pixel_limit).
warnings.simplefilter("error", Image.DecompressionBombWarning)

_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError)
_RGB_BYTES = 3  # 8-bit RGB: the pixel the limit is stated in
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost: `max_pixels` of 8-bit RGB, in one of `formats`; JPEGs may
    decode at a reduced scale as long as both sides stay at least `min_side`."""

    max_pixels: int
    formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    min_side: int = 0


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image in its own mode, EXIF orientation applied, and the size it was sent at
    (after EXIF orientation; `image` is smaller when JPEG draft mode reduced it)."""

    image: Image.Image
    size: tuple[int, int]


def pixel_cost(size: tuple[int, int], mode: str) -> int:
    """Pixels as the limit counts them: width x height, scaled up by the mode's bytes per pixel
    when it has more than 8-bit RGB (RGBA and CMYK count 4/3, 32-bit grey 4/3, ...)."""
    width, height = size
    descriptor = ImageMode.getmode(mode)
    pixel_bytes = np.dtype(descriptor.typestr).itemsize * len(descriptor.bands)
    return math.ceil(width * height * max(_RGB_BYTES, pixel_bytes) / _RGB_BYTES)


def follow_pixel_limit(max_pixels: int) -> None:
    """Make Pillow's own limit (process-wide) the service's, so that its checks and ours
    agree and a 413 never quotes another number than the setting."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def decode_image(data: bytes, limits: DecodeLimits) -> DecodedImage:
    """Decode `data` within `limits`. Raises EmptyImage, ImageTooLarge or InvalidImage; never
    anything else."""
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=list(limits.formats))
    except _BOMBS as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {limits.max_pixels})") from exc
    except Exception as exc:  # Pillow raises many kinds for foreign bytes
        raise InvalidImage(
            f"the bytes are not an image in an accepted format ({', '.join(limits.formats)})"
        ) from exc
    _check_size(image, limits.max_pixels)
    stored_size = image.size
    try:
        if image.format == "JPEG" and limits.min_side and min(stored_size) >= 2 * limits.min_side:
            image.draft(image.mode, (limits.min_side, limits.min_side))
        image.load()  # the first frame of an animation
        _check_size(image, limits.max_pixels)  # loading may change the size (ICO, GIF, ...)
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        upright = ImageOps.exif_transpose(image) or image
    except ImageTooLarge:
        raise
    except _BOMBS as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {limits.max_pixels})") from exc
    except Exception as exc:  # truncated or corrupt data
        raise InvalidImage("the image data is corrupt or truncated") from exc
    width, height = stored_size
    return DecodedImage(upright, (height, width) if orientation in _SWAPS_AXES else stored_size)


def _check_size(image: ImageFile.ImageFile, max_pixels: int) -> None:
    """The image, and every block its decoder would allocate at once, within the limit."""
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    cost = pixel_cost(image.size, image.mode)
    if cost > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} {image.mode} = {cost} RGB-pixel equivalents "
            f"(limit {max_pixels})"
        )
    for block in _decoder_blocks(image):
        if pixel_cost(block, image.mode) > max_pixels:
            raise ImageTooLarge(
                f"the image is stored in {block[0]}x{block[1]} blocks (limit {max_pixels} pixels)"
            )


def _decoder_blocks(image: ImageFile.ImageFile) -> list[tuple[int, int]]:
    """The sizes of the pieces the decoder reads at once: its tiles, and for TIFF the tile or
    strip the file declares (a TIFF may say 1 x 1 and hold a 16384 x 16384 tile)."""
    blocks = [
        (tile.extents[2] - tile.extents[0], tile.extents[3] - tile.extents[1])
        for tile in image.tile
        if tile.extents is not None
    ]
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        tags = image.tag_v2
        width, height = image.size
        if TiffImagePlugin.TILEWIDTH in tags or TiffImagePlugin.TILELENGTH in tags:
            blocks.append(
                (
                    int(tags.get(TiffImagePlugin.TILEWIDTH, 1)),
                    int(tags.get(TiffImagePlugin.TILELENGTH, 1)),
                )
            )
        rows = int(tags.get(TiffImagePlugin.ROWSPERSTRIP, height))
        blocks.append((width, min(rows, height)))  # libtiff reads at most the image's rows
    return blocks
