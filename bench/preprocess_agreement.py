"""Does a change to `app/preprocess.py` change what the model sees? Run it once with the old code
on the path and once with the new, then compare.

Each run writes the tensors `app.preprocess.preprocess` makes for a fixed corpus (synthetic
images of many sizes, shapes and modes, for the bundled model's spec and for ImageNet's) and
the bundled model's held-out top-1 through training's evaluation dataset (`EvalImages`, the
service's preprocessing) and onnxruntime: on the held-out MNIST images as they are (28 x 28, the
model card's number) and scaled up to other sizes, so that the resize path is exercised.

    PYTHONPATH=/path/to/old/checkout python bench/preprocess_agreement.py --out old.npz
    PYTHONPATH=. python bench/preprocess_agreement.py --out new.npz --compare old.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from app.model_config import PreprocessConfig, read_model_config
from app.preprocess import preprocess
from app.session import INPUT
from app.settings import DEFAULT_MODEL_DIR
from training.config import TrainConfig
from training.data.loader import EvalImages
from training.data.sources import load_source

SIZES = [
    (640, 480),
    (480, 640),
    (1000, 300),
    (37, 53),
    (224, 224),
    (225, 224),
    (3000, 2000),
    (31, 1200),
    (1200, 31),
    (29, 28),
    (5000, 7),
]
MODES = ["RGB", "L", "RGBA", "P", "I;16"]
SPECS = {
    "bundled": PreprocessConfig(resize=28, crop=(28, 28)),
    "imagenet": PreprocessConfig(resize=256, crop=(224, 224)),
    "wide": PreprocessConfig(resize=64, crop=(48, 96), interpolation="bilinear"),
}
HELD_OUT_SIZES = [None, (97, 73), (300, 200)]


def synthetic(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    """A smooth random image with edges: low-resolution noise scaled up, plus a sharp block."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    image = coarse.resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(image).copy()
    pixels[height // 3 : height // 2 + 1, width // 3 : width // 2 + 1] = rng.integers(0, 256, 3)
    image = Image.fromarray(pixels, "RGB")
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        return Image.fromarray(grey)
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return image.convert(mode)


def corpus_tensors() -> dict[str, np.ndarray]:
    tensors = {}
    for spec_name, spec in SPECS.items():
        for size in SIZES:
            for mode in MODES:
                key = f"{spec_name}/{size[0]}x{size[1]}/{mode}"
                tensors[key] = preprocess(synthetic(size, mode, seed=len(tensors)), spec)
    return tensors


class Scaled:
    """An image set whose images are scaled to `size` first (None: as they are)."""

    def __init__(self, images: Any, size: tuple[int, int] | None) -> None:
        self.images, self.size, self.targets = images, size, images.targets

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> Image.Image:
        image = self.images.image(index)
        return image if self.size is None else image.resize(self.size, Image.Resampling.BICUBIC)


def held_out_top1(model_dir: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    config = read_model_config(model_dir)
    split = load_source("mnist", TrainConfig(), config.image_size[0])
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    scores, tensors = {}, {}
    for size in HELD_OUT_SIZES:
        name = "as-is" if size is None else f"{size[0]}x{size[1]}"
        dataset = EvalImages(Scaled(split.val, size), config.preprocess)
        batch = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
        logits = session.run(["logits"], {INPUT: batch})[0]
        scores[name] = float((logits.argmax(-1) == np.asarray(split.val.targets)).mean())
        tensors[f"held-out/{name}"] = batch
    return scores, tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="write this run's tensors here")
    parser.add_argument("--compare", type=Path, help="a previous run's tensors to compare with")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    top1, held_out = held_out_top1(args.model_dir)
    tensors = {**corpus_tensors(), **held_out}
    np.savez_compressed(args.out, **tensors)
    report: dict[str, object] = {"held_out_top1": top1, "images": len(SIZES) * len(MODES)}
    if args.compare:
        old = np.load(args.compare)
        diffs = {key: float(np.abs(tensors[key] - old[key]).max()) for key in tensors}
        by_spec: dict[str, float] = {}
        for key, diff in diffs.items():
            group = key.split("/")[0] + ("/" + key.split("/")[1] if key.startswith("held") else "")
            by_spec[group] = max(by_spec.get(group, 0.0), diff)
        report["max_abs_diff"] = by_spec
        report["worst"] = sorted(diffs.items(), key=lambda item: -item[1])[:5]
        report["one_8bit_step"] = 1 / 255 / 0.5  # one grey level after normalising (std 0.5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
