"""A run killed with SIGKILL in its second epoch and resumed ends exactly where an uninterrupted
run ends, and the resumed process does less work (it starts from the mid-epoch checkpoint)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 44  # 1,437 training digits // 32
ARGS = [
    "pretrain",
    "--data",
    "digits",
    "--depth",
    "2",
    "--embed-dim",
    "96",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--checkpoint-every",
    "4",
    "--seed",
    "3",
    "--no-progress",
]
KILL_AT_STEP = STEPS_PER_EPOCH + 28  # late in epoch 2: the resumed run has 16 steps left
SAVED = re.compile(r"saved .* at epoch (\d+), step (\d+)")


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _timed(run_cli: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> float:
    started = time.perf_counter()
    done = run_cli(*args)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    out = Path(args[args.index("--out") + 1])
    (out / "resume.log").write_text(done.stderr)
    return seconds


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ],
)
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    cli_env: dict[str, str],
    device: str,
) -> None:
    """On CUDA with the default fast path (bf16, compiled), deterministic kernels, so that two
    uninterrupted runs would agree bit for bit too."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    if device == "cpu":
        cli_env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU run, even on a machine with a GPU
    args = [*ARGS, "--deterministic"] if device == "cuda" else ARGS
    # A GPU runs the rest of the epoch in moments: kill it early in epoch 2 there.
    kill_at = KILL_AT_STEP if device == "cpu" else STEPS_PER_EPOCH + 4
    whole_seconds = _timed(run_cli, *args, "--out", str(whole))

    child = subprocess.Popen(
        [sys.executable, "-m", "training.run", *args, "--out", str(broken)],
        cwd=REPO,
        env=cli_env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert child.stderr is not None
    killed_after = None
    for line in child.stderr:
        match = SAVED.search(line)
        if match and int(match[1]) == 2 and int(match[2]) >= kill_at:
            child.kill()  # SIGKILL: no handler runs, nothing is flushed
            killed_after = int(match[2])
            break
    child.wait(timeout=60)
    assert killed_after is not None, "no checkpoint late in epoch 2 was logged"
    assert child.returncode == -9, f"finished before the kill: {child.returncode}"
    assert [line["epoch"] for line in _metrics(broken)] == [1]  # it died inside epoch 2

    resumed_seconds = _timed(run_cli, *args, "--out", str(broken), "--resume")
    assert f"at epoch 2, step {killed_after}" in (broken / "resume.log").read_text()

    for a, b in zip(_metrics(whole), _metrics(broken), strict=True):
        for key in (
            "epoch",
            "step",
            "train_loss",
            "train_acc1",
            "val_loss",
            "val_acc1",
            "val_acc5",
            "lr",
        ):
            assert a[key] == b[key], (key, a, b)
    end_whole = torch.load(whole / "last.pt", weights_only=False)
    end_broken = torch.load(broken / "last.pt", weights_only=False)
    for name, tensor in end_whole["model"].items():
        assert torch.equal(tensor, end_broken["model"][name]), name
    assert end_broken["step"] == 2 * STEPS_PER_EPOCH
    if device == "cpu":  # on a GPU, start-up and compilation outweigh 88 tiny steps
        # The resumed process trained 16 steps, the whole run 88.
        assert resumed_seconds < whole_seconds, (resumed_seconds, whole_seconds)
