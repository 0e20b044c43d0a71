"""Two processes under torchrun (gloo on CPU): one writer, reduced metrics, ranks agree, with
gradient accumulation (gradients all-reduced only on the last micro-batch of each step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.evaluate import evaluate_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "ddp"
    # gloo on CPU even where a GPU is: NCCL refuses two ranks on one device.
    cli_env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "training.run",
            "pretrain",
            "--data",
            "digits",
            "--depth",
            "1",
            "--embed-dim",
            "48",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--accum-steps",
            "2",
            "--checkpoint-every",
            "5",
            "--no-progress",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0/2 finished; replicas agree: True" in done.stderr
    assert "rank 1/2 finished; replicas agree: True" in done.stderr
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]  # one writer: no duplicated lines
    assert all(line["world_size"] == 2 for line in lines)
    # 1,437 images over 2 ranks: 719 each, 22 steps of 2 x 16 per rank and epoch.
    assert lines[-1]["step"] == 44
    assert lines[-1]["val_loss"] < lines[0]["val_loss"]
    assert (out / "best.pt").exists() and not list(out.glob(".*.tmp"))
    # The reduced validation numbers are those of the whole held-out split, in one process.
    report = evaluate_checkpoint(out / "last.pt")
    assert report["num_images"] == 359  # a fifth of each digit class
    assert report["top1"] == lines[-1]["val_acc1"]
    assert report["loss"] == pytest.approx(lines[-1]["val_loss"], rel=1e-5)
