"""One run of the experiment, in whichever process: a pre-training or a fine-tuning.

A run is a small frozen record (picklable, so a worker process can take it); it writes its
result as JSON under OUT and, when that file exists, is not run again: the experiment resumes
run by run. Wall and CPU seconds are recorded per run (the machine is shared).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from experiments.formula_pretraining import nets
from experiments.formula_pretraining.attention import ink_share
from experiments.formula_pretraining.digits import draw_shots, load_digits
from experiments.formula_pretraining.settings import Settings
from experiments.formula_pretraining.steps import Recipe, accuracy, fit
from training.data.contours import ContourConfig, generate_contours
from training.data.fractal import FractalConfig, generate_fractaldb

log = logging.getLogger("experiments.formula_pretraining")

Source = Literal["contours", "fractal"]
HELDOUT_FIRST_INSTANCE = 100_000  # contours: held-out instances, after any training range


@dataclass(frozen=True)
class Init:
    """Where a fine-tuning starts: a network, random or pre-trained on `images` per class."""

    arch: nets.Arch
    source: Source | None = None  # None: random weights (from scratch)
    images: int = 0  # pre-training images per class

    @property
    def name(self) -> str:
        if self.source is None:
            return f"{self.arch}-scratch"
        return f"{self.arch}-{self.source}-n{self.images}"


def model_options(settings: Settings) -> dict[str, Any]:
    keys = ("image_size", "patch_size", "embed_dim", "num_heads", "depth", "vit_pool", "cnn_width")
    return {k: getattr(settings, k) for k in keys}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write, then rename: an interrupted run leaves no result behind, so it is redone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


class RecipeMismatch(ValueError):
    """--out holds runs made with other settings than this invocation's."""


def claim_out(settings: Settings) -> None:
    """Keep every run in one --out made by one recipe (`Settings.recipe`): the first invocation
    writes OUT/recipe.json, a later one with other settings is refused, since reusing its
    finished runs would mix results silently."""
    path = settings.out / "recipe.json"
    recipe = json.loads(json.dumps(settings.recipe()))  # tuples as JSON reads them back
    made = read_result(path)
    if made is None:
        _write_json(path, recipe)
        return
    differ = [
        f"{k}={made.get(k, '(unset)')!r} there, {v!r} here"
        for k, v in recipe.items()
        if made.get(k, "(unset)") != v
    ]
    if differ:
        raise RecipeMismatch(
            f"{settings.out} holds runs made with other settings ({'; '.join(differ)}): "
            "use another --out, or that directory's settings"
        )


# --- Pre-training ------------------------------------------------------------------------------


def synthetic_arrays(
    settings: Settings, source: Source, images: int, workers: int | None = 1
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train images, labels), (held-out images, labels), grey uint8 (N, side, side). Contours:
    instances 0..images-1 and a fixed later range; FractalDB: the last `pretrain_heldout` of
    `images + pretrain_heldout` instances per class. Cached under `settings.cache_dir`."""
    size, classes, held = settings.image_size, settings.pretrain_classes, settings.pretrain_heldout
    if source == "contours":
        base = ContourConfig(num_classes=classes, instances_per_class=images, image_size=size)
        heldout = ContourConfig(
            num_classes=classes,
            instances_per_class=held,
            first_instance=HELDOUT_FIRST_INSTANCE,
            image_size=size,
        )
        x, y, _ = generate_contours(base, settings.cache_dir, workers)
        hx, hy, _ = generate_contours(heldout, settings.cache_dir, workers)
        return (x, y), (hx, hy)
    config = FractalConfig(num_classes=classes, instances_per_class=images + held, image_size=size)
    x, y, _ = generate_fractaldb(config, settings.cache_dir, workers)
    grey = x.max(axis=-1)  # white points: every channel alike
    instance = np.tile(np.arange(images + held), classes)
    train, test = instance < images, instance >= images
    return (grey[train], y[train]), (grey[test], y[test])


@dataclass(frozen=True)
class PretrainJob:
    settings: Settings
    init: Init

    @property
    def weights(self) -> Path:
        return self.settings.out / "pretrain" / f"{self.init.name}.pt"

    @property
    def result_path(self) -> Path:
        return self.settings.out / "pretrain" / f"{self.init.name}.json"

    def run(self) -> dict[str, Any]:
        s, init = self.settings, self.init
        if init.source is None:
            raise ValueError(f"{init.name} has nothing to pre-train on")
        wall, cpu = time.perf_counter(), time.process_time()
        (x, y), (hx, hy) = synthetic_arrays(s, init.source, init.images)
        options = model_options(s)
        model = nets.build(init.arch, s.pretrain_classes, options, seed=0)
        recipe = Recipe(
            steps=s.pretrain_steps,
            batch_size=s.pretrain_batch_size,
            lr=s.pretrain_lr,
            weight_decay=s.weight_decay,
            warmup=s.warmup,
            shift=s.shift,
        )
        train_acc = fit(model, x, y, recipe, seed=0)
        heldout_acc = accuracy(model, hx, hy)
        self.weights.parent.mkdir(parents=True, exist_ok=True)
        nets.save_net(model, init.arch, options, self.weights)
        result = {
            "init": init.name,
            "arch": init.arch,
            "source": init.source,
            "images_per_class": init.images,
            "classes": s.pretrain_classes,
            "steps": s.pretrain_steps,
            "train_acc": train_acc,
            "heldout_acc": heldout_acc,
            "heldout_images": len(hy),
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
        }
        log.info(
            "pre-trained %s: held-out top-1 %.3f (chance %.3f) in %.0f s",
            init.name, heldout_acc, 1 / s.pretrain_classes, result["wall_s"],
        )  # fmt: skip
        return result


# --- Fine-tuning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneJob:
    """Fine-tune `init` on `shots` digits per class of `seed` (None: the learning-rate
    selection's draw, scored on the validation digits; else scored on the test digits)."""

    settings: Settings
    init: Init
    shots: int
    seed: int | None
    steps: int
    lr: float
    keep_weights: bool = False

    @property
    def name(self) -> str:
        seed = "select" if self.seed is None else f"seed{self.seed}"
        return f"{self.init.name}_shots{self.shots}_{seed}_steps{self.steps}_lr{self.lr:g}"

    @property
    def result_path(self) -> Path:
        return self.settings.out / "runs" / f"{self.name}.json"

    @property
    def weights(self) -> Path:
        return self.settings.out / "runs" / f"{self.name}.pt"

    def start(self, num_classes: int) -> nn.Module:
        """The initial network: pre-trained with a fresh zero head, or random from the seed."""
        s, init = self.settings, self.init
        if init.source is None:
            return nets.build(init.arch, num_classes, model_options(s), seed=self.seed or 0)
        model, _ = nets.load_net(PretrainJob(s, init).weights)
        model.reset_head(num_classes)  # type: ignore[operator]
        return model

    def run(self) -> dict[str, Any]:
        s = self.settings
        wall, cpu = time.perf_counter(), time.process_time()
        digits = load_digits(s.classes, s.test_per_class, s.val_per_class, s.image_size)
        x, y = digits.take(draw_shots(digits, self.shots, self.seed))
        scored_on = "val" if self.seed is None else "test"
        ex, ey = digits.take(digits.val if self.seed is None else digits.test)
        model = self.start(s.classes)
        recipe = Recipe(self.steps, s.batch_size, self.lr, s.weight_decay, s.warmup, s.shift)
        train_acc = fit(model, x, y, recipe, seed=self.seed or 0)
        result: dict[str, Any] = {
            "init": self.init.name,
            "arch": self.init.arch,
            "shots": self.shots,
            "seed": self.seed,
            "steps": self.steps,
            "lr": self.lr,
            "scored_on": scored_on,
            "top1": accuracy(model, ex, ey),
            "train_acc": train_acc,
        }
        if self.init.arch == "vit" and self.seed is not None:
            result["attention"] = ink_share(model, ex)  # type: ignore[arg-type]
        if self.keep_weights:
            nets.save_net(model, self.init.arch, model_options(s), self.weights)
        result["wall_s"] = time.perf_counter() - wall
        result["cpu_s"] = time.process_time() - cpu
        log.info(
            "%s: %s top-1 %.3f (%.0f s)", self.name, scored_on, result["top1"], result["wall_s"]
        )
        return result


Job = PretrainJob | FinetuneJob


def execute(job: Job) -> dict[str, Any]:
    """Run `job` unless its result exists; in a worker process, on one torch thread."""
    done = read_result(job.result_path)
    if done is not None:
        return done
    result = job.run()
    _write_json(job.result_path, result)
    return result
