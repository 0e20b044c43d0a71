"""One typed training config: defaults < stage defaults < preset < TOML file < command line."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.config import GlobalPool
from training.cli_options import option as _opt

Stage = Literal["pretrain", "finetune"]
DEFAULT_ARCH = "vit_tiny_patch4_32"


@dataclass
class ModelSpec:
    """Which ViT to build: a variant name plus any field of `model.ViTConfig` overridden.
    Unset (None) fields keep the variant's value (pretrain) or the checkpoint's (finetune)."""

    arch: str | None = _opt(
        None,
        f"variant vit_{{tiny,small,base,...}}_patch{{P}}_{{RES}} (default: {DEFAULT_ARCH}; "
        "finetune: the checkpoint's, needed only for files that do not say)",
    )
    image_size: int | None = _opt(
        None, "input side in pixels; finetune resamples position embeddings (default: as built)"
    )
    depth: int | None = _opt(None, "number of Transformer blocks (default: as built)")
    embed_dim: int | None = _opt(None, "token width (default: as built)")
    num_heads: int | None = _opt(None, "attention heads (default: as built)")
    mlp_ratio: float | None = _opt(None, "MLP hidden size / embed_dim (default: as built)")
    drop_rate: float | None = _opt(None, "dropout in embeddings, MLPs, head (default: as built)")
    drop_path_rate: float | None = _opt(None, "stochastic depth, last block (default: as built)")
    global_pool: GlobalPool | None = _opt(
        None, "class token or mean of patch tokens (default: as built)"
    )

    def overrides(self) -> dict[str, Any]:
        """The `ViTConfig` fields this spec sets (everything but the variant name)."""
        values = dataclasses.asdict(self)
        values.pop("arch")
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class TrainConfig:
    """Everything a pretrain or finetune run needs; `to_dict()` is saved in every checkpoint."""

    stage: Stage = _opt("pretrain", "pretrain (random init) or finetune (from --init)")
    data: str = _opt(
        "digits", "folder path, 'fractal', 'contours', or a packaged set: digits, mnist"
    )
    out: str = _opt("runs/train", "run directory (config, metrics.jsonl, curves.png, *.pt)")
    init: str | None = _opt(None, "finetune: checkpoint to start from (ours, timm, HF, npz)")
    resume: bool = _opt(False, "continue the run in --out from its last.pt (if there is one)")
    model: ModelSpec = field(default_factory=ModelSpec)
    # Optimisation.
    epochs: int = _opt(10, "passes over the training split")
    batch_size: int = _opt(128, "images per optimizer step, all processes and micro-batches")
    accum_steps: int = _opt(1, "micro-batches accumulated per optimizer step")
    optimizer: Literal["adamw", "sgd"] = _opt("adamw", "adamw, or sgd with momentum (paper)")
    lr: float = _opt(1e-3, "peak learning rate")
    min_lr: float = _opt(1e-5, "learning rate at the end of the cosine decay")
    warmup_epochs: float = _opt(1.0, "linear warm-up length, in epochs (fractions allowed)")
    weight_decay: float = _opt(0.05, "decoupled weight decay (not on biases, norms, embeddings)")
    momentum: float = _opt(0.9, "SGD momentum / AdamW beta1")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0: off)")
    # Data and augmentation.
    val_fraction: float = _opt(0.2, "held-out fraction when the data has no val/ split")
    crop_scale: float | None = _opt(None, "random resized crop min area (default: per data)")
    hflip: bool | None = _opt(None, "random horizontal flips (default: per data; not digits)")
    randaugment: int = _opt(0, "RandAugment operations per image (0: off)")
    mixup_alpha: float = _opt(0.0, "mixup Beta(alpha, alpha) (0: off)")
    fractal_classes: int = _opt(100, "FractalDB: number of classes")
    fractal_instances: int = _opt(100, "FractalDB: images per class")
    contour_classes: int = _opt(50, "contours: number of classes")
    contour_instances: int = _opt(100, "contours: images per class")
    cache_dir: str | None = _opt(None, "FractalDB, contours: cache directory for generated images")
    # Running.
    seed: int = _opt(0, "seed of init, data order, splits and augmentation")
    workers: int | None = _opt(
        None,
        "DataLoader worker processes per rank (default: this process's cores shared by the "
        "node's ranks, less one for the training process; 0: load in the training process)",
    )
    checkpoint_every: int = _opt(50, "also save last.pt every this many steps (0: epoch ends)")
    # Speed (training/fast_path.py decides what each means on the run's device).
    amp: bool | None = _opt(None, "bf16 autocast (default: on for CUDA, off on CPU)")
    compile: bool | None = _opt(
        None, "torch.compile the model (default: on for CUDA, off on CPU where it did not pay)"
    )
    tf32: bool = _opt(True, "TF32 tensor cores for matmuls left in fp32 (CUDA only)")
    grad_checkpointing: bool = _opt(
        False,
        "recompute each block's activations in backward: less memory, about a third more compute",
    )
    deterministic: bool = _opt(
        False, "deterministic kernels only (bit-exact reruns on CUDA; slower)"
    )
    progress: bool = _opt(True, "progress bar with loss, accuracy and images/s")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return merge(cls(), values)

    def to_toml(self) -> str:
        """The config as a TOML file that `--config` reads back (unset options left out)."""
        lines = [
            f"{k} = {_toml_value(v)}"
            for k, v in self.to_dict().items()
            if k != "model" and v is not None
        ]
        lines.append("\n[model]")
        lines += [
            f"{k} = {_toml_value(v)}"
            for k, v in dataclasses.asdict(self.model).items()
            if v is not None
        ]
        return "\n".join(lines) + "\n"


# What each stage starts from, before presets, files and options: the paper fine-tunes with
# SGD and momentum, no weight decay, a short warm-up and a higher rate than AdamW would use.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrain": {},
    "finetune": {
        "optimizer": "sgd",
        "lr": 0.01,
        "weight_decay": 0.0,
        "warmup_epochs": 0.5,
        "epochs": 5,
        "label_smoothing": 0.0,
    },
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def coerce(annotation: Any, value: Any) -> Any:
    """Check (and widen int -> float) a value against a field's annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and type(value) is not annotation:
        raise ValueError(f"{value!r} is not a {annotation.__name__}")
    return value


def merge(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """A copy of `config` with `values` applied; a nested `model` dict updates the model spec.
    Unknown keys and wrongly typed values are errors that name the key."""
    values = dict(values)
    model_values = values.pop("model", None) or {}
    updates: dict[str, Any] = {}
    for cls, given, into in ((TrainConfig, values, updates), (ModelSpec, model_values, None)):
        hints = typing.get_type_hints(cls)
        target: dict[str, Any] = into if into is not None else {}
        for key, value in given.items():
            if key not in hints or key == "model":
                raise ValueError(f"unknown {cls.__name__} option {key!r}")
            try:
                target[key] = coerce(hints[key], value)
            except ValueError as error:
                raise ValueError(f"option {key!r}: {error}") from None
        if into is None:
            updates["model"] = dataclasses.replace(config.model, **target)
    return dataclasses.replace(config, **updates)


def load_toml(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def resolve(
    stage: Stage,
    preset: dict[str, Any] | None = None,
    file: str | Path | None = None,
    cli: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < stage defaults < preset < TOML file < command-line options."""
    config = merge(TrainConfig(), {**STAGE_DEFAULTS[stage], "stage": stage})
    for values in (preset, load_toml(file) if file else None, cli):
        if values:
            config = merge(config, values)
    return dataclasses.replace(config, stage=stage)  # the subcommand decides, not a file
