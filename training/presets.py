"""Named pipeline settings: what `pipeline --preset NAME` pre-trains and fine-tunes.

Each stage's dict is applied over that stage's defaults (see `training.config`), before any
config file or command-line option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    description: str
    model_name: str  # the exported model's name in config.json and the service's answers
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # The whole pipeline in well under 2 minutes on 2 CPU cores; the tests run it.
    "smoke": Preset(
        description="a 2-block narrow ViT, a few seconds per stage: proves the plumbing",
        model_name="vit-smoke-digits",
        pretrain={
            "data": "fractal",
            "fractal_classes": 10,
            "fractal_instances": 20,
            "model": {"arch": "vit_tiny_patch4_32", "depth": 2, "embed_dim": 96},
            "epochs": 2,
            "batch_size": 32,
            "lr": 1e-3,
            "warmup_epochs": 0.5,
            "checkpoint_every": 0,
        },
        finetune={
            "data": "digits",
            "epochs": 2,
            "batch_size": 64,
            "lr": 0.05,
            "checkpoint_every": 0,
        },
    ),
    # The model the service bundles: contour pre-training, MNIST fine-tuning; a 4-block
    # ViT-Ti/4 at MNIST's own 28x28 (a 7x7 attention grid, about 1.8 M parameters, a ~7 MB
    # ONNX file). Pre-training on 50 x 100 formula-driven contours (1,188 steps of 64; no label
    # smoothing, as in experiments/formula_pretraining) and 60 fine-tuning epochs see fewer
    # images (316 k) than FractalDB's 2 epochs and 80 fine-tuning epochs did (326 k), and reach
    # a higher held-out top-1 (docs/training.md).
    "default": Preset(
        description="ViT-Ti/4 depth 4 at 28x28: contour pre-training, MNIST fine-tuning",
        model_name="vit-tiny-mnist",
        pretrain={
            "data": "contours",
            "contour_classes": 50,
            "contour_instances": 100,
            "model": {"arch": "vit_tiny_patch4_28", "depth": 4, "global_pool": "avg"},
            "epochs": 19,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_epochs": 2,
            "label_smoothing": 0.0,
        },
        finetune={
            "data": "mnist",
            "optimizer": "adamw",
            "epochs": 60,
            "batch_size": 32,
            "lr": 1e-3,
            "weight_decay": 0.05,
            "warmup_epochs": 1.0,
            "label_smoothing": 0.1,
            "crop_scale": 0.8,
        },
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
