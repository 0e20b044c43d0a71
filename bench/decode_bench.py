"""JPEG decode + preprocess throughput per core: Pillow (with `draft`, the service's decoder)
against libjpeg-turbo bindings (PyTurboJPEG, simplejpeg) with DCT-domain downscaling, side by
side in one run, then how the winner scales over threads and processes.

    python bench/decode_bench.py [--seconds 3] [--rounds 5] [--workers 1 2]

The bindings are not dependencies of the service (none was adopted, docs/performance.md):
`pip install simplejpeg 'pyturbojpeg<2'` and Debian's `libturbojpeg0` (libjpeg-turbo 2.1, which
PyTurboJPEG 2 refuses) to run them; `--decoders pillow` runs without.

Each upload is a photo-like JPEG (quality 90) at 224x224 (what a client that resizes sends) and
640x480 (a camera thumbnail); each is decoded to RGB and preprocessed for ViT-B/16 at 224 by
`app.preprocess` (resize the shorter side, centre-crop, normalise): the whole per-image cost of
the service's preprocessing pool. Decoders run in interleaved rounds of `--seconds` each; the
table gives each one's median img/s on one thread and its ratio to Pillow per round (steady
when the machine is shared), then img/s over N threads and N processes for each decoder.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.images import decode_image  # noqa: E402
from app.model_config import PreprocessConfig  # noqa: E402
from app.preprocess import preprocess  # noqa: E402

SPEC = PreprocessConfig(resize=224, crop=(224, 224))
MAX_PIXELS = 64_000_000
SIZES = ((224, 224), (640, 480))


def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """Smooth gradients, shapes and a little noise: compresses like a photo."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 5, height // 6, width // 2, height // 2), fill=(200, 60, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def pillow(data: bytes) -> np.ndarray:
    return preprocess(decode_image(data, MAX_PIXELS, min_side=SPEC.resize), SPEC)


_turbo = None


def turbojpeg(data: bytes) -> np.ndarray:
    """PyTurboJPEG: the largest DCT scaling that keeps the shorter side >= the resize."""
    global _turbo
    from turbojpeg import TJPF_RGB, TurboJPEG

    if _turbo is None:
        _turbo = TurboJPEG()
    width, height, _, _ = _turbo.decode_header(data)
    factor = (1, 1)
    for num, den in sorted(_turbo.scaling_factors, key=lambda f: f[0] / f[1]):
        if min(width, height) * num / den >= SPEC.resize:
            factor = (num, den)
            break
    pixels = _turbo.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor)
    return preprocess(Image.fromarray(pixels, "RGB"), SPEC)


def simplejpeg(data: bytes) -> np.ndarray:
    """simplejpeg: DCT scaling chosen by min_height/min_width."""
    import simplejpeg as sj

    side = SPEC.resize
    pixels = sj.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side)
    return preprocess(Image.fromarray(pixels, "RGB"), SPEC)


DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    "pillow": pillow,
    "turbojpeg": turbojpeg,
    "simplejpeg": simplejpeg,
}


def _decode_many(name: str, data: bytes, count: int) -> int:
    for _ in range(count):
        DECODERS[name](data)
    return count


def rate(name: str, data: bytes, seconds: float) -> float:
    """Images per second on this thread."""
    decode = DECODERS[name]
    decode(data)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        decode(data)
        done += 1
    return done / elapsed


def pooled_rate(pool: Executor, workers: int, name: str, data: bytes, seconds: float) -> float:
    """Images per second with `workers` jobs at once, each decoding `chunk` images."""
    chunk = max(1, int(rate(name, data, 0.3) * seconds / 4))
    list(pool.map(_decode_many, [name] * workers, [data] * workers, [1] * workers))  # warm
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        done += sum(pool.map(_decode_many, [name] * workers, [data] * workers, [chunk] * workers))
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="*", default=[2])
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    args = parser.parse_args()
    random.seed(0)

    print("| upload | decoder | img/s, 1 thread | x Pillow | max abs diff vs Pillow |")
    print("|---|---|---:|---:|---:|")
    for width, height in SIZES:
        data = photo_jpeg(width, height)
        reference = pillow(data)
        rates: dict[str, list[float]] = {name: [] for name in args.decoders}
        for _ in range(args.rounds):
            order = list(args.decoders)
            random.shuffle(order)
            for name in order:
                rates[name].append(rate(name, data, args.seconds))
        for name in args.decoders:
            ratios = [r / p for r, p in zip(rates[name], rates["pillow"], strict=True)]
            diff = float(np.abs(DECODERS[name](data) - reference).max())
            print(
                f"| {width}x{height} ({len(data) // 1024} KB) | {name} | "
                f"{statistics.median(rates[name]):.0f} | {statistics.median(ratios):.2f} | "
                f"{diff:.3f} |",
                flush=True,
            )

    print()
    print("| upload | decoder | workers | threads img/s | processes img/s |")
    print("|---|---|---:|---:|---:|")
    for width, height in SIZES:
        data = photo_jpeg(width, height)
        for name in args.decoders:
            for workers in args.workers:
                with ThreadPoolExecutor(workers) as threads:
                    by_threads = pooled_rate(threads, workers, name, data, args.seconds)
                with ProcessPoolExecutor(workers) as processes:
                    by_processes = pooled_rate(processes, workers, name, data, args.seconds)
                print(
                    f"| {width}x{height} | {name} | {workers} | {by_threads:.0f} | "
                    f"{by_processes:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
