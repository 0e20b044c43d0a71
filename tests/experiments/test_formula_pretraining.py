"""The paper experiment at a tiny size: 3 digit classes, a 1-block ViT, a few steps.

One real invocation (two worker processes, the sweep on) is shared by the tests of its outputs;
the parts (splits, shifts, the learning-rate choice, the ink share, the fairness of the plan) are
tested on their own."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from experiments.formula_pretraining import __main__ as experiment
from experiments.formula_pretraining import jobs, nets
from experiments.formula_pretraining.attention import ink_patches, ink_share
from experiments.formula_pretraining.digits import draw_shots, load_digits
from experiments.formula_pretraining.jobs import FinetuneJob, Init, synthetic_arrays
from experiments.formula_pretraining.nets import build
from experiments.formula_pretraining.plan import build_tasks, choose_rate
from experiments.formula_pretraining.settings import Settings, parse_settings
from experiments.formula_pretraining.steps import batch_order, random_shift

TINY = [
    "--classes", "3", "--seeds", "2", "--shots", "10", "--steps", "3",
    "--lr-grid", "1e-3", "3e-3", "--test-per-class", "10", "--val-per-class", "5",
    "--depth", "1", "--embed-dim", "24", "--num-heads", "2", "--cnn-width", "4",
    "--pretrain-classes", "4", "--pretrain-images", "6", "--pretrain-heldout", "2",
    "--pretrain-steps", "3", "--pretrain-batch-size", "8", "--batch-size", "8",
    "--sweep", "--sweep-images", "3", "6", "--sweep-seeds", "1", "--attention-images", "3",
]  # fmt: skip


def tiny_settings(tmp: Path) -> Settings:
    return parse_settings([*TINY, "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache")])


def run_main(tmp: Path, jobs_: int, *extra: str) -> None:
    threads = torch.get_num_threads()
    argv = [*TINY, "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache"), *extra]
    try:
        assert experiment.main([*argv, "--jobs", str(jobs_)]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def invocation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("paper")
    run_main(tmp, 2)
    return tmp, json.loads((tmp / "out" / "results.json").read_text())


def test_every_init_gets_the_same_budget_and_shots(invocation: tuple[Path, Any]) -> None:
    _, results = invocation
    inits = ["vit-contours-n6", "vit-scratch", "cnn-scratch"]
    rows = results["rows"]
    assert [(r["steps"], r["shots"], r["init"]) for r in rows] == [(3, 10, i) for i in inits]
    for row in rows:
        assert len(row["top1_per_seed"]) == 2
        assert all(0.0 <= v <= 1.0 for v in row["top1_per_seed"])
    for run in results["runs"].values():
        assert run["steps"] == 3 and run["scored_on"] in ("val", "test")
        assert run["cpu_s"] > 0 and run["wall_s"] > 0


def test_rates_are_chosen_once_per_init_on_validation(invocation: tuple[Path, Any]) -> None:
    _, results = invocation
    rates = {r["init"]: r for r in results["rates"]}
    assert set(rates) == {"vit-contours-n6", "vit-scratch", "cnn-scratch", "cnn-contours-n6"}
    for choice in rates.values():
        assert set(choice["val_top1"]) == {"0.001", "0.003"}
        assert choice["val_top1"][f"{choice['lr']:g}"] == max(choice["val_top1"].values())
    selection = [r for r in results["runs"].values() if r["seed"] is None]
    assert len(selection) == 4 * 2 and {r["scored_on"] for r in selection} == {"val"}
    for row in results["rows"]:  # every run of an init uses its one chosen rate
        assert row["lr"] == rates[row["init"]]["lr"]


def test_gaps_are_paired_and_tested(invocation: tuple[Path, Any]) -> None:
    _, results = invocation
    top1 = {(r["steps"], r["shots"], r["init"]): r["top1_per_seed"] for r in results["rows"]}
    assert len(results["gaps"]) == 2  # every init but the reference
    for gap in results["gaps"]:
        mine = top1[(gap["steps"], gap["shots"], gap["init"])]
        base = top1[(gap["steps"], gap["shots"], "vit-scratch")]
        assert gap["deltas"] == pytest.approx([a - b for a, b in zip(mine, base, strict=True)])
        assert gap["ahead"] == sum(d > 0 for d in gap["deltas"]) and gap["seeds"] == 2


def test_attention_share_baselines_and_files(invocation: tuple[Path, Any]) -> None:
    tmp, results = invocation
    for row in results["rows"]:
        if row["init"].startswith("vit"):
            mass, _ = row["ink_mass"]
            assert 0.0 < mass < 1.0 and 0.0 < row["ink_patches"] < 1.0
        else:
            assert "ink_mass" not in row
    methods = {b["method"] for b in results["baselines"]}
    assert methods == {
        "1-NN, raw pixels",
        "linear probe, vit-contours-n6",
        "linear probe, vit-scratch",
        "linear probe, cnn-scratch",
    }
    knn = [b for b in results["baselines"] if b["method"] == "1-NN, raw pixels"]
    assert all(b["mean"] > 1 / 3 for b in knn)  # 1-NN beats chance on 3 digit classes
    out = tmp / "out"
    for name in ("results.md", "attention.png", "sweep.png"):
        assert (out / name).stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "| 3 | 10 | vit-contours-n6 |" in table and "Data-scale sweep" in table


def test_sweep_reports_every_point_that_ran(invocation: tuple[Path, Any]) -> None:
    _, results = invocation
    points = {(p["arch"], p["images_per_class"]): p for p in results["sweep"]}
    assert set(points) == {(a, n) for a in ("vit", "cnn") for n in (3, 6)}
    for point in points.values():
        assert len(point["top1_per_seed"]) == 1 and 0 <= point["pretrain_heldout_acc"] <= 1


def test_a_rerun_resumes_without_running_anything(
    invocation: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, first = invocation

    def must_not_run(self: object) -> None:
        raise AssertionError("ran again instead of reading the result")

    monkeypatch.setattr(jobs.PretrainJob, "run", must_not_run)
    monkeypatch.setattr(jobs.FinetuneJob, "run", must_not_run)
    run_main(tmp, 1)
    again = json.loads((tmp / "out" / "results.json").read_text())
    assert again["rows"] == first["rows"] and again["gaps"] == first["gaps"]
    assert again["missing"] == []


def test_report_only_summarises_what_ran(
    invocation: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, first = invocation
    monkeypatch.setattr(jobs.FinetuneJob, "run", None)  # calling it would fail loudly
    lost = next((tmp / "out" / "runs").glob("vit-scratch_shots10_seed1_*.json"))
    lost.unlink()
    run_main(tmp, 1, "--report-only")
    partial = json.loads((tmp / "out" / "results.json").read_text())
    assert partial["missing"] == ["run:vit-scratch:10:1:3"]
    scratch = next(r for r in partial["rows"] if r["init"] == "vit-scratch")
    assert scratch["seeds"] == [0]
    assert all(g["seeds"] == 1 and g["p_paired_t"] is None for g in partial["gaps"])
    assert (
        "runs not (yet) made: 1 (run:vit-scratch:10:1:3)"
        in (tmp / "out" / "results.md").read_text()
    )


def test_plan_pairs_every_pretrained_run_with_a_scratch_run(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        tiny_settings(tmp_path), fractal=True, sweep=False, long=True, shots=(10, 12)
    )
    runs = [t.key.split(":")[1:] for t in build_tasks(settings) if t.key.startswith("run:")]
    by_init: dict[str, set[tuple[str, ...]]] = {}
    for init, *rest in runs:
        by_init.setdefault(init, set()).add(tuple(rest))
    assert set(by_init) == {"vit-contours-n6", "vit-fractal-n6", "vit-scratch", "cnn-scratch"}
    assert len({frozenset(v) for v in by_init.values()}) == 1  # the same shots, seeds, budgets
    assert len(by_init["vit-scratch"]) == 2 * 2 * 2  # shots x seeds x budgets


def test_choose_rate_keeps_the_best_validation_score(tmp_path: Path) -> None:
    settings = dataclasses.replace(tiny_settings(tmp_path), lr_grid=(1e-3, 2e-3, 4e-3))
    scores = {"0.001": 0.5, "0.002": 0.7, "0.004": 0.7}
    results = {f"select:vit-scratch:{lr}": {"top1": v} for lr, v in scores.items()}
    assert choose_rate(settings, Init("vit"), results)["lr"] == 2e-3  # the first of equals


def test_digit_splits_are_disjoint_and_shots_nested() -> None:
    digits = load_digits(3, 20, 10, 32)
    assert digits.images.shape[1:] == (32, 32)
    test, val, pool = set(digits.test), set(digits.val), set(digits.pool)
    assert not (test & val or test & pool or val & pool)
    assert len(test) == 60 and len(val) == 30
    ten, fifty = draw_shots(digits, 10, seed=1), draw_shots(digits, 50, seed=1)
    assert set(ten) <= set(fifty) and set(fifty) <= pool
    assert not set(draw_shots(digits, 10, seed=None)) & val  # selection shots: never val
    assert not np.array_equal(ten, draw_shots(digits, 10, seed=2))


def test_shift_moves_content_within_bounds() -> None:
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3:5, 3:5] = 1.0  # a centred square
    moved = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape
    assert torch.equal((moved == 1).sum(dim=(1, 2, 3)), torch.full((64,), 4))  # nothing lost
    centres = {tuple(torch.nonzero(m[0] == 1).float().mean(0).tolist()) for m in moved}
    assert len(centres) > 10  # many different shifts
    assert all(1.5 <= r <= 5.5 and 1.5 <= c <= 5.5 for r, c in centres)
    order = batch_order(10, steps=7, batch_size=4, seed=0)
    assert order.shape == (7, 4) and sorted(order.ravel()[:10].tolist()) == list(range(10))


def test_ink_share_counts_rollout_mass_on_strokes() -> None:
    images = np.zeros((2, 32, 32), dtype=np.uint8)
    images[:, 0:4, 0:8] = 255  # two ink patches of 64
    assert ink_patches(images, 4).sum(axis=(1, 2)).tolist() == [2, 2]
    model = build("vit", 3, {**jobs.model_options(Settings()), "depth": 1}, seed=0)
    share = ink_share(model, images)  # type: ignore[arg-type]
    assert share["ink_patches"] == pytest.approx(2 / 64)
    # A freshly initialised ViT attends almost uniformly: the mass is near the chance share.
    assert share["ink_mass"] == pytest.approx(2 / 64, abs=0.01)


def test_fractal_pretraining_arrays_are_grey_and_held_out_by_instance(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        tiny_settings(tmp_path), image_size=16, pretrain_classes=3, pretrain_heldout=1
    )
    (x, y), (hx, hy) = synthetic_arrays(settings, "fractal", 2)
    assert x.shape == (6, 16, 16) and hx.shape == (3, 16, 16) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 1, 1, 2, 2] and hy.tolist() == [0, 1, 2]
    (cx, _), (chx, _) = synthetic_arrays(settings, "contours", 2)
    assert cx.shape == (6, 16, 16)
    assert not any((h == cx).all(axis=(1, 2)).any() for h in chx)  # held out: other images


def test_a_pretrained_start_has_a_zero_head(invocation: tuple[Path, Any]) -> None:
    tmp, _ = invocation
    init = Init("vit", "contours", 6)
    model = FinetuneJob(tiny_settings(tmp), init, 10, 0, 3, 1e-3).start(3)
    head = model.head
    assert isinstance(head, torch.nn.Linear)
    assert head.out_features == 3 and not head.weight.any()


def test_bad_settings_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--classes", "11"])
    assert "--classes must be in 2..10" in capsys.readouterr().err


def test_an_out_dir_keeps_one_recipe(
    invocation: tuple[Path, Any], caplog: pytest.LogCaptureFixture
) -> None:
    tmp, _ = invocation
    recipe = json.loads((tmp / "out" / "recipe.json").read_text())
    assert recipe["embed_dim"] == 24 and recipe["vit_pool"] == "token"
    assert "seeds" not in recipe and "shots" not in recipe  # more of them: more runs, kept
    before = (tmp / "out" / "results.json").read_text()
    argv = [*TINY, "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache")]
    with caplog.at_level(logging.ERROR):
        assert experiment.main([*argv, "--embed-dim", "48", "--report-only"]) == 2
    assert "embed_dim=24 there, 48 here" in caplog.text
    assert (tmp / "out" / "results.json").read_text() == before  # nothing touched


def test_a_probe_reads_what_the_vit_head_reads() -> None:
    x = torch.randn(2, 1, 32, 32)
    for pool in ("token", "avg"):
        options = {**jobs.model_options(Settings(vit_pool=pool)), "depth": 1}
        model = build("vit", 3, options, seed=0)
        tokens = model.forward_features(x)[0]  # type: ignore[operator]
        read = tokens[:, 1:].mean(dim=1) if pool == "avg" else tokens[:, 0]
        assert torch.allclose(nets.embed(model, x), read)
