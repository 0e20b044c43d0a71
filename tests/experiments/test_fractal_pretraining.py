"""The paper experiment in miniature: two digit classes, a few shots, one seed, one epoch.

The fast tests fine-tune the shared tiny checkpoint (no FractalDB drawn) so CI runs every step
after pre-training in seconds; the slow one runs the whole command, pre-training included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from experiments import fractal_pretraining as exp
from training.config import load_toml
from training.data.base import split_indices

TINY_RUN = [
    "--seeds", "1", "--shots", "2", "3", "--classes", "2", "--test-fraction", "0.02",
    "--epochs", "1", "--epoch-images", "8", "--batch-size", "4", "--attention-images", "3",
    "--jobs", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def check_outputs(out: Path, shots: list[int], seeds: int) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text())
    assert [(r["shots"], r["init"]) for r in results["rows"]] == [
        (s, init) for s in shots for init in ("fractal", "scratch")
    ]
    for row in results["rows"]:
        assert len(row["top1_per_seed"]) == seeds
        assert all(0.0 <= v <= 1.0 for v in row["top1_per_seed"])
        assert row["top1_mean"] == pytest.approx(np.mean(row["top1_per_seed"]))
        assert row["seconds"] > 0
    assert [g["shots"] for g in results["gains"]] == shots
    assert len(results["runs"]) == 2 * len(shots) * seeds
    assert results["seconds"] > 0
    table = (out / "results.md").read_text()
    assert "| shots/class | init | top-1 % mean ± std |" in table
    assert table.count("| fractal |") == table.count("| scratch |") == len(shots)
    with Image.open(out / "attention.png") as image:
        assert image.format == "PNG"
        assert image.width > 300 and image.height > 300
    return results


def test_miniature_compares_identical_budgets(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "paper"
    assert exp.main([*TINY_RUN, "--out", str(out), "--pretrained", str(tiny_checkpoint)]) == 0
    results = check_outputs(out, [2, 3], 1)
    assert results["test_images"] == 20  # 2% of 2 x 500 MNIST digits
    for shots in (2, 3):
        runs = {r["init"]: r for r in results["runs"] if r["shots"] == shots}
        # 2 classes x shots, repeated to >= 8 images an epoch, in batches of 4.
        assert runs["fractal"]["steps"] == runs["scratch"]["steps"] == {2: 2, 3: 3}[shots]
        configs = {k: load_toml(Path(r["run"]) / "config.toml") for k, r in runs.items()}
        a, b = configs["fractal"], configs["scratch"]
        differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert differ <= {"stage", "init", "out", "model"}
        assert configs["fractal"]["init"] == str(tiny_checkpoint)
        assert configs["scratch"]["model"]["depth"] == 2  # the checkpoint's architecture
        # Only the seed-0 runs of the largest shot count keep weights (for attention.png).
        kept = (Path(runs["fractal"]["run"]) / "last.pt").exists()
        assert kept == (shots == 3)


def test_shots_are_nested_and_never_test_images() -> None:
    digits = exp.load_digits("mnist", 3, 0.2)
    assert len(digits.test) == 300
    _, test = split_indices(digits.targets, 0.2, exp.TEST_SPLIT_SEED)
    assert np.array_equal(digits.test, test)  # a fixed split, whatever the seed
    ten, fifty = exp.draw_shots(digits, 10, 4), exp.draw_shots(digits, 50, 4)
    assert np.bincount(digits.targets[fifty]).tolist() == [50, 50, 50]
    assert set(ten) <= set(fifty)
    assert not set(fifty) & set(digits.test)
    assert not np.array_equal(np.sort(fifty), np.sort(exp.draw_shots(digits, 50, 5)))


def test_help_documents_every_option() -> None:
    parser = exp.build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} == {f.name for f in exp.dataclasses.fields(exp.Settings)}
    assert all(a.help for a in options)


@pytest.mark.slow
def test_whole_experiment_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    tiny_model = ["--depth", "1", "--embed-dim", "48", "--fractal-classes", "3"]
    pretrain = ["--fractal-instances", "8", "--pretrain-epochs", "1", "--pretrain-batch-size", "8"]
    argv = [*TINY_RUN, *tiny_model, *pretrain, "--cache-dir", str(tmp_path / "cache")]
    assert exp.main([*argv, "--out", str(out), "--jobs", "2"]) == 0
    results = check_outputs(out, [2, 3], 1)
    assert (out / "pretrain" / "best.pt").exists()
    assert results["pretrain"]["steps"] == 2  # 21 of 24 fractals in training, batch 8
    assert 0.0 <= results["pretrain"]["fractal_val_acc1"] <= 1.0
