"""Bytes -> RGB image: format from the bytes, pixel limit before decoding, EXIF orientation,
JPEG draft mode for large images, any mode to RGB, first frame of animations."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from app.errors import EmptyImage, ImageTooLarge, InvalidImage

# We check the pixel count ourselves, against our own limit, before anything is decoded.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def decode_image(data: bytes, max_pixels: int, min_side: int = 0) -> Image.Image:
    """Decode `data` into an RGB image; `min_side` lets JPEGs decode at a reduced scale
    (DCT draft) as long as both sides stay at least that large.

    Raises EmptyImage, ImageTooLarge or InvalidImage; never anything else.
    """
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {max_pixels})") from exc
    except Exception as exc:  # Pillow raises many kinds for foreign bytes
        raise InvalidImage("the bytes are not an image Pillow can decode") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels (limit {max_pixels})"
        )
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    try:
        if image.format == "JPEG" and min_side and min(width, height) >= 2 * min_side:
            image.draft("RGB", (min_side, min_side))
        image.load()  # the first frame of an animation
        return to_rgb(ImageOps.exif_transpose(image) or image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {max_pixels})") from exc
    except Exception as exc:  # truncated or corrupt data
        raise InvalidImage(f"the image could not be decoded: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; high-bit-depth greys keep their top 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):  # 16-bit grey
        pixels = np.asarray(image, dtype=np.uint16) >> 8
        return Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB")
    if image.mode == "I":  # 32-bit signed grey: 16-bit data lands here too
        pixels = np.asarray(image, dtype=np.int64)
        if pixels.max(initial=0) > 255:
            pixels = pixels >> 8
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float32))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # via RGBA, as Pillow asks for transparent palettes
    return image.convert("RGB")
