"""Images for the tests, made in memory: good ones, and the corpus of bad and odd files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def photo(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A deterministic RGB image with structure (gradients and a block), not a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256])
    pixels = pixels.transpose(1, 2, 0).astype(np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels, "RGB")


def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG of width x height zeros: a few kilobytes that claim `width * height` pixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def exif_rotated_jpeg() -> tuple[bytes, Image.Image]:
    """A landscape JPEG whose EXIF says 'rotate 90 CW' (orientation 6), and the upright image."""
    stored = photo(64, 32, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    upright = Image.open(io.BytesIO(data))
    upright.load()
    return data, stored.transpose(Image.Transpose.ROTATE_270)


def animated_gif() -> bytes:
    frames = [photo(24, 24, seed=i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def sixteen_bit_png() -> bytes:
    ramp = (np.arange(40 * 40, dtype=np.uint32).reshape(40, 40) * 40).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")  # mode I;16


def palette_png_with_transparency() -> bytes:
    image = photo(30, 20).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def cmyk_jpeg() -> bytes:
    return encode(photo(40, 30).convert("CMYK"), "JPEG")


def bad_files() -> dict[str, tuple[bytes, int, str | None]]:
    """name -> (bytes, expected status, expected error code or None for 200)."""
    jpeg = encode(photo(256, 192), "JPEG", quality=90)
    png = encode(photo(256, 192), "PNG")
    rng = np.random.default_rng(0)
    return {
        "zero bytes": (b"", 400, "empty_image"),
        "random bytes": (
            rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            400,
            "invalid_image",
        ),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], 400, "invalid_image"),
        "truncated png": (png[: len(png) // 2], 400, "invalid_image"),
        "text": (b"this is not an image, just some text\n" * 10, 400, "invalid_image"),
        "decompression bomb": (png_bomb(10_000, 10_000), 413, "image_too_large"),
        "1x1": (encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), 200, None),
        "cmyk jpeg": (cmyk_jpeg(), 200, None),
        "16-bit png": (sixteen_bit_png(), 200, None),
        "palette png with transparency": (palette_png_with_transparency(), 200, None),
        "animated gif": (animated_gif(), 200, None),
        "exif-rotated jpeg": (exif_rotated_jpeg()[0], 200, None),
    }
