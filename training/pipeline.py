"""`pipeline`: pretrain -> finetune -> evaluate -> export, each stage in its own directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from training.config import resolve
from training.evaluate import evaluate_checkpoint
from training.export import export_checkpoint
from training.loop import train
from training.presets import get_preset

log = logging.getLogger(__name__)


def run_pipeline(
    preset: str, out: str | Path, resume: bool = False, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run a preset into `out`: `pretrain/`, `finetune/` (run directories), `eval.json`, and
    `model/` (the exported model directory). `options` (e.g.
    workers, progress) apply to both training stages. Returns the evaluation report."""
    out = Path(out)
    settings = get_preset(preset)
    common = {"resume": resume, **(options or {})}
    pretrain = resolve("pretrain", settings.pretrain, cli={**common, "out": str(out / "pretrain")})
    train(pretrain)
    finetune = resolve(
        "finetune",
        settings.finetune,
        cli={**common, "out": str(out / "finetune"), "init": str(out / "pretrain" / "best.pt")},
    )
    train(finetune)
    best = out / "finetune" / "best.pt"
    report = evaluate_checkpoint(best, out=out / "eval.json")
    export_checkpoint(
        best,
        out / "model",
        labels=report["labels"],
        name=settings.model_name,
        metrics={
            "top1": report["top1"],
            "top5": report["top5"],
            "dataset": f"{report['data']}, held-out split of {report['num_images']} images",
        },
    )
    log.info("pipeline %s done: %s", preset, json.dumps({"top1": report["top1"]}))
    return report
