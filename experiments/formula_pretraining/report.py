"""Results -> the summary: per-seed numbers, mean ± std, paired gaps with a t-test, and the
tables of results.md. Every run made is in the summary; nothing is selected after the fact."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats

from experiments.formula_pretraining.jobs import Init
from experiments.formula_pretraining.plan import headline_inits, sweep_inits
from experiments.formula_pretraining.settings import Settings

REFERENCE = Init("vit").name  # every gap is against the same ViT from scratch


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def _runs(results: dict[str, Any], init: str, shots: int, steps: int, seeds: int) -> list[Any]:
    """The finished runs of a group, by seed (an interrupted invocation may lack some)."""
    keys = [f"run:{init}:{shots}:{seed}:{steps}" for seed in range(seeds)]
    return [results[k] for k in keys if k in results]


def table_rows(settings: Settings, results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per budget, shot count and initialisation."""
    rows = []
    for steps in settings.budgets():
        for shots in settings.shots:
            for init in headline_inits(settings):
                runs = _runs(results, init.name, shots, steps, settings.seeds)
                if not runs:
                    continue
                mean, std = mean_std([r["top1"] for r in runs])
                row: dict[str, Any] = {
                    "steps": steps,
                    "shots": shots,
                    "init": init.name,
                    "lr": runs[0]["lr"],
                    "seeds": [r["seed"] for r in runs],
                    "top1_mean": mean,
                    "top1_std": std,
                    "top1_per_seed": [r["top1"] for r in runs],
                    "wall_s": sum(r["wall_s"] for r in runs),
                }
                if "attention" in runs[0]:
                    row["ink_mass"] = mean_std([r["attention"]["ink_mass"] for r in runs])
                    row["ink_patches"] = statistics.fmean(
                        r["attention"]["ink_patches"] for r in runs
                    )
                rows.append(row)
    return rows


def paired_gaps(settings: Settings, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each initialisation minus the ViT from scratch on the same seed (the same shots)."""
    gaps = []
    for steps in settings.budgets():
        for shots in settings.shots:
            base = {
                r["seed"]: r["top1"]
                for r in _runs(results, REFERENCE, shots, steps, settings.seeds)
            }
            for init in headline_inits(settings):
                if init.name == REFERENCE:
                    continue
                runs = _runs(results, init.name, shots, steps, settings.seeds)
                pairs = [(r["top1"], base[r["seed"]]) for r in runs if r["seed"] in base]
                if not pairs:
                    continue
                deltas = [a - b for a, b in pairs]
                mean, std = mean_std(deltas)
                p = float(stats.ttest_rel(*zip(*pairs, strict=True))[1]) if len(pairs) > 1 else None
                gaps.append(
                    {
                        "steps": steps,
                        "shots": shots,
                        "init": init.name,
                        "mean": mean,
                        "std": std,
                        "ahead": sum(d > 0 for d in deltas),
                        "seeds": len(deltas),
                        "deltas": deltas,
                        "p_paired_t": p,
                    }
                )
    return gaps


def sweep_points(settings: Settings, results: dict[str, Any]) -> list[dict[str, Any]]:
    """10-shot test top-1 per pre-training size and architecture, over the seeds that ran."""
    points = []
    for init in sweep_inits(settings):
        runs = _runs(results, init.name, 10, settings.steps, settings.sweep_seeds)
        pre = results.get(f"pretrain:{init.name}")
        if not runs or pre is None:
            continue
        mean, std = mean_std([r["top1"] for r in runs])
        points.append(
            {
                "arch": init.arch,
                "images_per_class": init.images,
                "top1_mean": mean,
                "top1_std": std,
                "top1_per_seed": [r["top1"] for r in runs],
                "pretrain_heldout_acc": pre["heldout_acc"],
            }
        )
    return points


def _listed(keys: list[str], most: int = 12) -> str:
    if not keys:
        return ""
    return "(" + ", ".join(keys[:most]) + (", ...)" if len(keys) > most else ")")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown(summary: dict[str, Any]) -> str:
    """results.md: the tables, from the summary alone."""
    s = summary["settings"]
    t = summary["timing"]
    lines = [
        "# Formula-driven pre-training vs scratch, few-shot MNIST digits",
        "",
        f"`{summary['command']}`",
        "",
        f"- wall time {t['wall_s']:.0f} s ({t['wall_s'] / 60:.1f} min) for this invocation, "
        f"{t['runs_wall_s']:.0f} s of run time and {t['runs_cpu_s']:.0f} CPU-seconds in all runs "
        f"(also those of earlier invocations); {t['cpus']} CPUs, 1-minute load average "
        f"{t['load_start']:.1f} at the start and {t['load_end']:.1f} at the end",
        f"- test: {summary['test_images']} digits, validation: {summary['val_images']} digits, "
        f"the same for every run; ViT/{s['patch_size']} at {s['image_size']} px, width "
        f"{s['embed_dim']}, {s['num_heads']} heads, {s['depth']} blocks",
        f"- runs not (yet) made: {len(summary['missing'])} {_listed(summary['missing'])}",
        "",
        "Pre-training (held-out top-1 on its own classes):",
        "",
        "| init | classes x images | steps | held-out top-1 % | chance % | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in summary["pretrain"]:
        lines.append(
            f"| {p['init']} | {p['classes']} x {p['images_per_class']} | {p['steps']} | "
            f"{_pct(p['heldout_acc'])} | {_pct(1 / p['classes'])} | {p['wall_s']:.0f} |"
        )
    lines += ["", "Learning rates (validation top-1 % per rate; the best kept):", ""]
    for choice in summary["rates"]:
        tried = ", ".join(f"{lr}: {_pct(v)}" for lr, v in choice["val_top1"].items())
        lines.append(f"- {choice['init']}: **{choice['lr']:g}** ({tried})")
    lines += [
        "",
        "| steps | shots/class | init | lr | test top-1 % mean ± std | per seed (seeds) | "
        "rollout mass on ink % (ink patches %) |",
        "|---:|---:|---|---:|---:|---|---|",
    ]
    for row in summary["rows"]:
        per_seed = " ".join(_pct(v) for v in row["top1_per_seed"])
        per_seed += f" ({','.join(map(str, row['seeds']))})"
        ink = "-"
        if "ink_mass" in row:
            ink = (
                f"{_pct(row['ink_mass'][0])} ± {_pct(row['ink_mass'][1])} "
                f"({_pct(row['ink_patches'])})"
            )
        lines.append(
            f"| {row['steps']} | {row['shots']} | {row['init']} | {row['lr']:g} | "
            f"{_pct(row['top1_mean'])} ± {_pct(row['top1_std'])} | {per_seed} | {ink} |"
        )
    lines += [
        "",
        f"Paired gaps against {REFERENCE} (same seed, same shots):",
        "",
        "| steps | shots/class | init | gap, points | ahead on | paired t-test p |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for g in summary["gaps"]:
        p = "-" if g["p_paired_t"] is None else f"{g['p_paired_t']:.2g}"
        lines.append(
            f"| {g['steps']} | {g['shots']} | {g['init']} | {_pct(g['mean'])} ± {_pct(g['std'])} "
            f"| {g['ahead']} of {g['seeds']} | {p} |"
        )
    lines += [
        "",
        "Baselines and linear probes (test top-1 %, mean ± std over seeds):",
        "",
        "| shots/class | method | top-1 % | per seed |",
        "|---:|---|---:|---|",
    ]
    for b in summary["baselines"]:
        per_seed = " ".join(_pct(v) for v in b["per_seed"])
        lines.append(
            f"| {b['shots']} | {b['method']} | {_pct(b['mean'])} ± {_pct(b['std'])} | {per_seed} |"
        )
    if summary["sweep"]:
        lines += [
            "",
            f"Data-scale sweep: 10 shots/class, {s['steps']} steps (seeds that ran):",
            "",
            "| arch | contours per class | pre-training held-out % | 10-shot top-1 % | seeds |",
            "|---|---:|---:|---:|---:|",
        ]
        for point in summary["sweep"]:
            lines.append(
                f"| {point['arch']} | {point['images_per_class']} | "
                f"{_pct(point['pretrain_heldout_acc'])} | {_pct(point['top1_mean'])} ± "
                f"{_pct(point['top1_std'])} | {len(point['top1_per_seed'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict[str, Any], steps: int, path: Path) -> None:
    """10-shot accuracy at the `steps` budget against pre-training images per class, ViT and
    CNN, with each from scratch as a dashed line: the paper's Figures 3-4 in miniature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arch, name, colour in (("vit", "ViT", "tab:blue"), ("cnn", "CNN", "tab:orange")):
        points = sorted(
            (p for p in summary["sweep"] if p["arch"] == arch), key=lambda p: p["images_per_class"]
        )
        if points:
            ax.errorbar(
                [p["images_per_class"] for p in points],
                [100 * p["top1_mean"] for p in points],
                yerr=[100 * p["top1_std"] for p in points],
                marker="o",
                capsize=3,
                color=colour,
                label=f"{name} pre-trained on contours",
            )
        scratch = [
            r
            for r in summary["rows"]
            if r["init"] == f"{arch}-scratch" and r["shots"] == 10 and r["steps"] == steps
        ]
        if scratch:
            level = 100 * scratch[0]["top1_mean"]
            ax.axhline(level, color=colour, ls="--", lw=1, label=f"{name} from scratch")
    ax.set_xscale("log")
    ax.set_xlabel("pre-training contours per class (50 classes)")
    ax.set_ylabel("MNIST test top-1 %, 10 shots/class")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
