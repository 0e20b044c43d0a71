"""Held-out evaluation: top-1, top-5, loss, per-class accuracy and the confusion matrix.

Images go through `app.preprocess.preprocess`, the service's own definition, so the numbers
here are the numbers the exported model gets on the same images.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.formats.read import read_checkpoint
from training.config import TrainConfig
from training.data.loader import EvalImages, eval_loader
from training.data.sources import load_source
from training.distributed import World, reduce_sums
from training.metrics import confusion_matrix, per_class_accuracy, topk_hits
from training.model_init import load_pretrained
from training.preprocessing import preprocess_config_for

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    loss: float
    acc1: float
    acc5: float
    confusion: np.ndarray  # (true, predicted) counts, summed over ranks

    @property
    def count(self) -> int:
        return int(self.confusion.sum())


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[tuple[torch.Tensor, int]],
    num_classes: int,
    world: World,
    autocast: bool = False,
) -> EvalResult:
    """Every rank evaluates its share; sums are reduced so every rank gets the same result."""
    was_training = model.training
    model.eval()
    loss_sum, hits1, hits5 = 0.0, 0, 0
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for images, targets in loader:
        images, targets = images.to(world.device), targets.to(world.device)
        with torch.autocast(world.device.type, torch.bfloat16, enabled=autocast):
            logits = model(images).float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        hits1 += topk_hits(logits, targets, 1)
        hits5 += topk_hits(logits, targets, 5)
        confusion += confusion_matrix(
            logits.argmax(-1).cpu().numpy(), targets.cpu().numpy(), num_classes
        )
    model.train(was_training)
    totals = reduce_sums([loss_sum, hits1, hits5, *confusion.ravel().tolist()], world)
    confusion = np.asarray(totals[3:], dtype=np.int64).reshape(num_classes, num_classes)
    count = max(1, int(confusion.sum()))
    return EvalResult(totals[0] / count, totals[1] / count, totals[2] / count, confusion)


def _saved_config(checkpoint: Path) -> TrainConfig:
    """The training config one of our checkpoints carries (so evaluation finds the same
    held-out split); the defaults for other files."""
    values = read_checkpoint(checkpoint).content.get("train_config")
    return TrainConfig.from_dict(values) if isinstance(values, dict) else TrainConfig()


def _json_floats(values: np.ndarray) -> list[float | None]:
    """NaN (a class without images) becomes null."""
    return [None if np.isnan(v) else float(v) for v in values]


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 256,
    workers: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on the held-out split of `data` (default: the data it was trained
    on, split as in training); write the report as JSON to `out` if given, and return it."""
    checkpoint = Path(checkpoint)
    config = _saved_config(checkpoint)
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    data = data or config.data
    model = load_pretrained(checkpoint)
    image_size = model.config.image_size
    split = load_source(data, config, image_size)
    labels = list(model.config.labels) or split.labels
    if labels != split.labels:
        raise ValueError(
            f"{checkpoint} was trained on labels {labels[:5]}..., data {data!r} has "
            f"{split.labels[:5]}...; evaluate it on data with the same classes"
        )
    world = World(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(world.device)
    dataset = EvalImages(split.val, preprocess_config_for(image_size))
    result = evaluate_model(model, eval_loader(dataset, batch_size, workers), len(labels), world)
    per_class = per_class_accuracy(result.confusion)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": data,
        "split": "val",
        "num_images": result.count,
        "top1": result.acc1,
        "top5": result.acc5,
        "loss": result.loss,
        "labels": labels,
        "per_class_accuracy": dict(zip(labels, _json_floats(per_class), strict=True)),
        "confusion_matrix": result.confusion.tolist(),
    }
    log.info(
        "%s on %s (%d images): top-1 %.4f, top-5 %.4f",
        checkpoint,
        data,
        result.count,
        result.acc1,
        result.acc5,
    )
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report
