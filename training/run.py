"""`python -m training.run {pretrain,finetune,evaluate,pipeline,export} ...`: the training CLI.

Training options are generated from the fields of `TrainConfig` / `ModelSpec`, so the
command line, the TOML file and the saved config always name the same things.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from training.cli_options import add_dataclass_options
from training.config import STAGE_DEFAULTS, ModelSpec, Stage, TrainConfig, merge

_HIDDEN = ("stage", "model")  # set by the subcommand / gathered from the model options


def _add_train_parser(subparsers: Any, stage: Stage, help: str) -> None:
    defaults = merge(TrainConfig(), {**STAGE_DEFAULTS[stage], "stage": stage})
    parser = subparsers.add_parser(stage, help=help, description=help)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of options (a [model] table for the model); "
        "command-line options override it",
    )
    skip = {*_HIDDEN, "init"} if stage == "pretrain" else set(_HIDDEN)
    add_dataclass_options(parser.add_argument_group("training"), TrainConfig, defaults, skip)
    add_dataclass_options(parser.add_argument_group("model"), ModelSpec, defaults.model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.run", description="Train, evaluate and export ViTs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub, "pretrain", "train a ViT from scratch (random init)")
    _add_train_parser(sub, "finetune", "fine-tune a checkpoint with a fresh zero head")

    evaluate = sub.add_parser(
        "evaluate",
        help="top-1/top-5, per-class accuracy and confusion matrix on held-out data",
        description="Evaluate a checkpoint on the held-out split (val/ folder or the seeded "
        "fraction its training used) with the service's preprocessing.",
    )
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint to evaluate")
    evaluate.add_argument(
        "--data", help="folder, 'fractal', digits or mnist (default: the training data)"
    )
    evaluate.add_argument("--out", help="also write the JSON report to this file")
    evaluate.add_argument("--batch-size", type=int, default=256, help="(default: 256)")
    evaluate.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    evaluate.add_argument(
        "--val-fraction", type=float, help="held-out fraction (default: the training run's)"
    )
    evaluate.add_argument("--seed", type=int, help="split seed (default: the training run's)")

    from training.presets import PRESETS

    pipeline = sub.add_parser(
        "pipeline",
        help="pretrain -> finetune -> evaluate -> export in one go",
        description="Run a preset: DIR/pretrain, DIR/finetune, DIR/eval.json, DIR/model.",
    )
    pipeline.add_argument(
        "--preset",
        required=True,
        choices=sorted(PRESETS),
        help="; ".join(f"{name}: {p.description}" for name, p in PRESETS.items()),
    )
    pipeline.add_argument("--out", required=True, help="output directory DIR")
    pipeline.add_argument(
        "--resume", action="store_true", help="continue each stage from its last.pt"
    )
    pipeline.add_argument("--workers", type=int, help="DataLoader workers per stage")
    pipeline.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="progress bars (default: on)"
    )

    if importlib.util.find_spec("training.export") is not None:
        from training import export

        export_parser = sub.add_parser(
            "export", help="checkpoint -> model directory (model.onnx + config.json)"
        )
        export.configure_parser(export_parser)
    return parser


def _train_command(args: argparse.Namespace) -> int:
    from training.config import resolve
    from training.distributed import close_world, init_world
    from training.loop import train

    given = vars(args)
    cli: dict[str, Any] = {k: v for k, v in given.items() if k not in ("command", "config")}
    model_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    cli["model"] = {k: cli.pop(k) for k in list(cli) if k in model_fields}
    config = resolve(args.command, file=args.config, cli=cli)
    world = init_world()
    try:
        train(config, world)
    finally:
        close_world(world)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if args.command in ("pretrain", "finetune"):
        return _train_command(args)
    if args.command == "evaluate":
        from training.evaluate import evaluate_checkpoint

        overrides = {k: v for k in ("val_fraction", "seed") if (v := getattr(args, k)) is not None}
        report = evaluate_checkpoint(
            args.checkpoint, args.data, args.out, args.batch_size, args.workers, overrides
        )
        summary = {k: report[k] for k in ("data", "num_images", "top1", "top5", "loss")}
        sys.stdout.write(json.dumps(summary) + "\n")
        return 0
    if args.command == "pipeline":
        from training.pipeline import run_pipeline

        options = {k: v for k in ("workers", "progress") if (v := getattr(args, k)) is not None}
        report = run_pipeline(args.preset, args.out, args.resume, options)
        sys.stdout.write(json.dumps({k: report[k] for k in ("top1", "top5")}) + "\n")
        return 0
    from training import export

    return export.run(args)


if __name__ == "__main__":
    sys.exit(main())
