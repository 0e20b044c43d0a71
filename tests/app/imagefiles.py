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


PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def png_bomb(width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    """A PNG of width x height zeros (1-bit grey by default): a few kilobytes that claim
    `width * height` pixels. Colour type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA."""
    row_bytes = (width * PNG_CHANNELS[colour_type] * bit_depth + 7) // 8
    compressor = zlib.compressobj(1)
    zeros = bytes(min(row_bytes + 1, 1 << 20))
    data = bytearray()
    for _ in range(height):  # filter byte + samples, in pieces of at most 1 MiB
        left = row_bytes + 1
        while left:
            data += compressor.compress(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", bytes(data))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def tiff_tile_trick(tile: int = 16384) -> bytes:
    """A TIFF that says it is 1 x 1 but stores its pixel in one `tile` x `tile` deflated tile:
    a decoder that trusts the tile decodes tile**2 bytes."""
    compressor = zlib.compressobj(1)
    zeros = bytes(1 << 20)
    data = b"".join(compressor.compress(zeros) for _ in range(tile * tile // len(zeros)))
    data += compressor.flush()
    entries = [  # tag, type (3 short, 4 long), value
        (256, 4, 1),  # ImageWidth
        (257, 4, 1),  # ImageLength
        (258, 3, 8),  # BitsPerSample
        (259, 3, 8),  # Compression: deflate
        (262, 3, 1),  # Photometric: black is zero
        (277, 3, 1),  # SamplesPerPixel
        (322, 4, tile),  # TileWidth
        (323, 4, tile),  # TileLength
        (324, 4, 0),  # TileOffsets, filled in below
        (325, 4, len(data)),  # TileByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 324 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


def ico_trick(side: int = 10_000) -> bytes:
    """An ICO whose directory says 16 x 16 but whose one entry is a `side` x `side` PNG."""
    png = png_bomb(side, side)
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type icon, one entry
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return directory + entry + png


def eps_file() -> bytes:
    """A small Encapsulated PostScript file: Pillow would hand it to Ghostscript."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
        b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
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
