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
    # The model the service bundles: FractalDB pre-training, MNIST fine-tuning; a 4-block
    # ViT-Ti/4 at MNIST's own 28x28 (a 7x7 attention grid, about 1.8 M parameters, a ~7 MB
    # ONNX file). A ViT from scratch learns slowly on 4,000 images: it needs optimizer steps
    # (small batches, many epochs) more than large batches.
    "default": Preset(
        description="ViT-Ti/4 depth 4 at 28x28: FractalDB pre-training, MNIST fine-tuning",
        model_name="vit-tiny-mnist",
        pretrain={
            "data": "fractal",
            "fractal_classes": 50,
            "fractal_instances": 80,
            "model": {"arch": "vit_tiny_patch4_28", "depth": 4, "global_pool": "avg"},
            "epochs": 2,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_epochs": 0.5,
        },
        finetune={
            "data": "mnist",
            "optimizer": "adamw",
            "epochs": 80,
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
