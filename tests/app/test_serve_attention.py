"""The attention answer over the image as sent: `crop` in its pixels (after EXIF rotation, and
in the sent size when JPEG draft mode decoded it smaller), and `attention=png` drawn over the
whole image, coloured in the crop and dimmed outside, its long side at most 512.

The tiny model resizes the shorter side to 32 and centre-crops 32 x 32."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from imagefiles import encode, exif_rotated_jpeg, photo
from PIL import Image

from app.heatmap import DIM_OUTSIDE


def attention(server, data: bytes, mode: str) -> dict[str, Any]:
    answer = server.client.post(
        "/classify",
        params={"attention": mode},
        files={"file": ("image", data, "application/octet-stream")},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]["attention"]


def png_of(answer: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(answer["png"])))
    assert image.format == "PNG"
    return image


def test_crop_of_a_wide_image_and_its_heatmap(server) -> None:
    grey = 120
    data = encode(Image.new("RGB", (64, 32), (grey, grey, grey)), "PNG")
    grid = attention(server, data, "grid")
    assert grid["crop"] == [16, 0, 48, 32]  # the centre square of 64 x 32

    answer = attention(server, data, "png")
    assert answer["crop"] == grid["crop"] and answer["grid"] == grid["grid"]
    heatmap = png_of(answer)
    assert heatmap.size == (64, 32)  # the image as sent, not the model's 32 x 32
    pixels = np.asarray(heatmap, dtype=int)
    dimmed = round(grey * DIM_OUTSIDE)
    assert (pixels[:, :16] == dimmed).all() and (pixels[:, 48:] == dimmed).all()
    assert (pixels[:, 16:48] != dimmed).any(axis=2).all()


def test_crop_after_exif_rotation(server) -> None:
    rotated, upright = exif_rotated_jpeg()  # stored 64 x 32, shown 32 x 64
    assert upright.size == (32, 64)
    assert attention(server, rotated, "grid")["crop"] == [0, 16, 32, 48]
    assert png_of(attention(server, rotated, "png")).size == (32, 64)


def test_crop_in_the_pixels_sent_when_draft_mode_decodes_smaller(server) -> None:
    # 1024 x 512: decoded at 1/8 (128 x 64) for a model that resizes to 32.
    data = encode(photo(1024, 512), "JPEG", quality=90)
    assert attention(server, data, "grid")["crop"] == [256, 0, 768, 512]
    heatmap = png_of(attention(server, data, "png"))
    assert heatmap.size == (512, 256)  # VITSERVE_ATTENTION_PNG_MAX_SIDE's default


def test_the_png_long_side_is_a_setting(start_server) -> None:
    server = start_server(attention_png_max_side=100)
    heatmap = png_of(attention(server, encode(photo(300, 200), "PNG"), "png"))
    assert heatmap.size == (100, 67)
