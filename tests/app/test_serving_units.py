"""Pure pieces of the service: settings, decoding, postprocessing."""

from __future__ import annotations

import os

import numpy as np
import pytest
from imagefiles import encode, photo, png_bomb
from PIL import Image
from pydantic import ValidationError

from app import settings as settings_module
from app.errors import EmptyImage, ImageTooLarge, InvalidImage
from app.images import DecodeLimits, decode_image, follow_pixel_limit
from app.postprocess import scale_attention, softmax, top_k
from app.preprocess import to_8bit
from app.settings import Settings


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VITSERVE_"):
            monkeypatch.delenv(name)
    s = Settings()
    assert (s.host, s.port, s.providers) == ("127.0.0.1", 8000, "auto")
    assert (s.max_batch_size, s.max_wait_ms, s.max_queue, s.request_timeout_s) == (32, 5, 256, 30)
    assert s.max_upload_bytes == 20 * 1024 * 1024 and s.max_image_pixels == 64_000_000
    assert s.model_dir.name == "default_model" and not s.allow_spinning
    assert s.onnx_threads >= 1


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITSERVE_PROVIDERS", "CUDA")
    monkeypatch.setenv("VITSERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("VITSERVE_INTRA_OP_THREADS", "3")
    s = Settings()
    assert (s.providers, s.max_batch_size, s.onnx_threads) == ("cuda", 8, 3)
    monkeypatch.setenv("VITSERVE_PROVIDERS", "tpu")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("VITSERVE_PROVIDERS", "cpu")
    monkeypatch.setenv("VITSERVE_MAX_QUEUE", "4")
    with pytest.raises(ValidationError, match="at least one full batch"):
        Settings()


def test_input_limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VITSERVE_"):
            monkeypatch.delenv(name)
    s = Settings()
    assert s.image_formats == ("JPEG", "PNG", "WEBP", "GIF", "BMP")
    assert (s.max_header_bytes, s.header_timeout_s, s.max_connections) == (65536, 10, 1024)
    assert s.body_read_timeout_s == 30.0  # 10 s + 20 MiB at 1 MiB/s
    assert s.buffered_bytes_limit == 4 * s.max_upload_bytes
    # 32 concurrent ~600 KB requests (the model repository's load) fit the default budget
    assert s.buffered_bytes_limit >= 32 * 600_000
    monkeypatch.setenv("VITSERVE_IMAGE_FORMATS", " png, tiff ")
    assert Settings().image_formats == ("PNG", "TIFF")
    monkeypatch.setenv("VITSERVE_IMAGE_FORMATS", "PNG,EPS")
    with pytest.raises(ValidationError, match="EPS not among"):
        Settings()
    monkeypatch.delenv("VITSERVE_IMAGE_FORMATS")
    monkeypatch.setenv("VITSERVE_MAX_IMAGE_PIXELS", str(2**31))  # more than the decoder honours
    with pytest.raises(ValidationError, match="max_image_pixels"):
        Settings()
    monkeypatch.delenv("VITSERVE_MAX_IMAGE_PIXELS")
    monkeypatch.setenv("VITSERVE_MAX_BUFFERED_BYTES", "1000")
    with pytest.raises(ValidationError, match="must hold at least one upload"):
        Settings()


def test_pillow_limit_follows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    follow_pixel_limit(1234)
    assert Image.MAX_IMAGE_PIXELS == 1234
    with pytest.raises(ImageTooLarge, match="limit 1234"):  # the 413 quotes our number
        decode_image(png_bomb(100, 100), DecodeLimits(1234))


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("INFO", "Debug", " warning "):
        monkeypatch.setenv("VITSERVE_LOG_LEVEL", value)
        assert Settings().log_level == value.strip().lower()
    monkeypatch.setenv("VITSERVE_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError):
        Settings()


def test_max_wait_must_be_shorter_than_the_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITSERVE_REQUEST_TIMEOUT_S", "2")
    monkeypatch.setenv("VITSERVE_MAX_WAIT_MS", "1999")
    assert Settings().max_wait_ms == 1999
    monkeypatch.setenv("VITSERVE_MAX_WAIT_MS", "2000")
    with pytest.raises(ValidationError, match="must be shorter than request_timeout_s"):
        Settings()


def test_api_keys_are_read_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITSERVE_API_KEYS", "sekrit-one,sekrit-two")
    settings = Settings()
    assert settings.api_key_set == {"sekrit-one", "sekrit-two"}
    assert "sekrit" not in repr(settings) and "sekrit" not in str(settings.model_dump())
    monkeypatch.setenv("VITSERVE_MAX_QUEUE", "1")  # any invalid setting: the error hides inputs
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "sekrit" not in str(caught.value)
    monkeypatch.setenv("VITSERVE_MAX_QUEUE", "256")
    monkeypatch.setenv("VITSERVE_API_KEYS", "/no/such/file")
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings()


def test_thread_counts_follow_available_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "available_cores", lambda: 4)
    s = Settings(inference_workers=2)
    assert (s.onnx_threads, s.decode_threads) == (2, 4)


def test_decode_limits_and_modes() -> None:
    with pytest.raises(EmptyImage):
        decode_image(b"", DecodeLimits(100))
    with pytest.raises(InvalidImage):
        decode_image(b"GIF89a broken", DecodeLimits(100))
    with pytest.raises(ImageTooLarge):
        decode_image(encode(photo(20, 10), "PNG"), DecodeLimits(199))
    with pytest.raises(ImageTooLarge):
        decode_image(png_bomb(30_000, 30_000), DecodeLimits(64_000_000))
    with pytest.raises(ImageTooLarge):  # RGBA counts 4/3 of a pixel: 200 pixels cost 267
        decode_image(encode(photo(20, 10).convert("RGBA"), "PNG"), DecodeLimits(266))
    assert decode_image(encode(photo(20, 10), "PNG"), DecodeLimits(200)).image.size == (20, 10)
    for mode in ("1", "L", "LA", "P", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"):
        image = to_8bit(photo(8, 6).convert("L").convert(mode) if mode != "I;16" else photo(8, 6))
        assert image.mode in ("L", "RGB") and image.size == (8, 6), mode


def test_jpeg_draft_keeps_the_needed_size() -> None:
    big = encode(photo(1024, 800), "JPEG", quality=90)
    decoded = decode_image(big, DecodeLimits(64_000_000, min_side=224))
    assert min(decoded.image.size) >= 224 and decoded.image.size[0] < 1024  # reduced scale
    assert decoded.size == (1024, 800)  # the size as sent
    assert decode_image(big, DecodeLimits(64_000_000)).image.size == (1024, 800)


def test_sixteen_bit_grey_keeps_its_range() -> None:
    ramp = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    image = to_8bit(Image.fromarray(ramp))
    assert image.getextrema() == (0, 255)


def test_softmax_top_k_and_scaling() -> None:
    logits = np.array([1000.0, 1000.0, 999.0, -np.inf], dtype=np.float32)
    p = softmax(logits)
    assert p.sum() == pytest.approx(1.0) and np.isfinite(p).all()
    assert [i for i, _ in top_k(p, 3)] == [0, 1, 2]  # ties: lower index first
    assert len(top_k(p, 99)) == 4
    grid = scale_attention(np.array([[0.1, 0.4], [0.2, 0.05]], dtype=np.float32))
    assert grid.max() == 1.0 and grid[0, 0] == pytest.approx(0.25)
    assert scale_attention(np.zeros((2, 2))).max() == 0
