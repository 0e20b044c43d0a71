"""`python -m experiments.formula_pretraining --out DIR [options]`: the whole experiment."""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from experiments.formula_pretraining import baselines, nets
from experiments.formula_pretraining.attention import plot_attention
from experiments.formula_pretraining.digits import Digits, draw_shots, load_digits
from experiments.formula_pretraining.jobs import (
    FinetuneJob,
    RecipeMismatch,
    claim_out,
    synthetic_arrays,
)
from experiments.formula_pretraining.plan import (
    build_tasks,
    finished_results,
    headline_inits,
    rate_owner,
    run_tasks,
    sweep_inits,
)
from experiments.formula_pretraining.report import (
    markdown,
    mean_std,
    paired_gaps,
    plot_sweep,
    sweep_points,
    table_rows,
)
from experiments.formula_pretraining.settings import Settings, parse_settings

log = logging.getLogger("experiments.formula_pretraining")


def draw_data(settings: Settings) -> None:
    """Every pre-training set, drawn into the cache up front with `jobs` processes."""
    for init in dict.fromkeys(headline_inits(settings) + sweep_inits(settings)):
        if init.source is not None:
            synthetic_arrays(settings, init.source, init.images, workers=settings.jobs)


def context_numbers(
    settings: Settings, digits: Digits, results: dict[str, Any]
) -> list[dict[str, Any]]:
    """1-NN on pixels and a linear probe of every initialisation (pre-trained ones whose
    pre-training has finished), per shot count."""
    rows: list[dict[str, Any]] = []
    tx, ty = digits.take(digits.test)
    test_features: dict[tuple[str, int], np.ndarray] = {}  # a pre-trained net: one per init
    for shots in settings.shots:
        knn = [baselines.nearest_neighbour(digits, shots, seed) for seed in range(settings.seeds)]
        rows.append({"shots": shots, "method": "1-NN, raw pixels", "per_seed": knn})
        for init in headline_inits(settings):
            if init.source is not None and f"pretrain:{init.name}" not in results:
                continue
            probes = []
            for seed in range(settings.seeds):
                model = FinetuneJob(settings, init, shots, seed, 0, 0.0).start(settings.classes)
                key = (init.name, seed if init.source is None else 0)
                if key not in test_features:
                    test_features[key] = baselines.features(model, tx)
                x, y = digits.take(draw_shots(digits, shots, seed))
                probe = baselines.linear_probe(
                    baselines.features(model, x), y, test_features[key], ty
                )
                probes.append(probe)
            rows.append(
                {"shots": shots, "method": f"linear probe, {init.name}", "per_seed": probes}
            )
    for row in rows:
        row["mean"], row["std"] = mean_std(row["per_seed"])
    return rows


def attention_figure(settings: Settings, digits: Digits, results: dict[str, Any]) -> None:
    """The seed-0 ViTs of the smallest shot count and shorter budget, on a few test digits
    (those that have finished)."""
    shots = min(settings.shots)
    models = {}
    for init in headline_inits(settings):
        if init.arch != "vit" or f"run:{init.name}:{shots}:0:{settings.steps}" not in results:
            continue
        lr = results[f"rate:{rate_owner(settings, init).name}"]["lr"]
        job = FinetuneJob(settings, init, shots, 0, settings.steps, lr, keep_weights=True)
        model, _ = nets.load_net(job.weights)
        models[init.name] = model
    if not models:
        return
    tx, ty = digits.take(digits.test)
    firsts = [int(np.flatnonzero(ty == c)[0]) for c in range(settings.classes)]
    some = firsts[: settings.attention_images]
    plot_attention(
        models,  # type: ignore[arg-type]
        tx[some],
        ty[some],
        settings.out / "attention.png",
        f"attention rollout, {shots} shots/class, seed 0 (green: right, red: wrong)",
    )


def run_experiment(settings: Settings, command: str) -> dict[str, Any]:
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    settings.out.mkdir(parents=True, exist_ok=True)
    claim_out(settings)
    torch.set_num_threads(1)
    tasks = build_tasks(settings)
    if settings.report_only:
        results = finished_results(tasks)
    else:
        draw_data(settings)
        results = run_tasks(tasks, settings.jobs)
    digits = load_digits(
        settings.classes, settings.test_per_class, settings.val_per_class, settings.image_size
    )
    runs = [v for k, v in results.items() if k.startswith(("pretrain:", "select:", "run:"))]
    summary: dict[str, Any] = {
        "command": command,
        "settings": settings.as_json(),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "test_images": len(digits.test),
        "val_images": len(digits.val),
        "pretrain": [v for k, v in results.items() if k.startswith("pretrain:")],
        "rates": [v for k, v in results.items() if k.startswith("rate:")],
        "rows": table_rows(settings, results),
        "baselines": context_numbers(settings, digits, results),
        "sweep": sweep_points(settings, results),
        "runs": {k: v for k, v in results.items() if k.startswith(("select:", "run:"))},
        "missing": [t.key for t in tasks if t.key not in results],
    }
    summary["gaps"] = paired_gaps(settings, results)
    attention_figure(settings, digits, results)
    if summary["sweep"]:
        plot_sweep(summary, settings.steps, settings.out / "sweep.png")
    summary["timing"] = {
        "wall_s": time.perf_counter() - started,
        "runs_wall_s": sum(r["wall_s"] for r in runs),
        "runs_cpu_s": sum(r["cpu_s"] for r in runs),
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    (settings.out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    (settings.out / "results.md").write_text(markdown(summary))
    log.info("done in %.0f s:\n%s", summary["timing"]["wall_s"], markdown(summary))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    command = shlex.join(["python", "-m", "experiments.formula_pretraining", *argv])
    try:
        run_experiment(settings, command)
    except RecipeMismatch as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
