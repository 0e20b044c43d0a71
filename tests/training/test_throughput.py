"""Data wait vs compute: the per-epoch measurement, on a loader that is slow and one that is not."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from training.config import resolve
from training.loop import train
from training.throughput import EpochTiming, TimedBatches

TINY_8PX = {"arch": "vit_tiny_patch2_8", "depth": 1, "embed_dim": 48, "num_heads": 3}


class Sleepy(Dataset[int]):
    """Each item costs `seconds` to make."""

    def __init__(self, size: int, seconds: float) -> None:
        self.size, self.seconds = size, seconds

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        time.sleep(self.seconds)
        return index


def test_timed_batches_count_the_wait_inside_next_only() -> None:
    batches = TimedBatches(DataLoader(Sleepy(8, 0.02), batch_size=4))
    start = time.perf_counter()
    for _ in batches:
        time.sleep(0.05)  # the consumer's own work is not waiting
    total = time.perf_counter() - start
    assert 0.16 <= batches.waited < total - 0.09
    timing = EpochTiming(seconds=total, data_wait_s=batches.waited, images=8)
    assert timing.compute_s == pytest.approx(total - batches.waited)
    assert timing.data_bound_share == pytest.approx(batches.waited / total)
    assert "waited on data" in timing.line() and "data-bound" in timing.line()


def _run(tmp_path: Path, name: str, data: str, batch_size: int) -> dict[str, float]:
    out = tmp_path / name
    options = {
        "data": data,
        "model": TINY_8PX,
        "epochs": 1,
        "batch_size": batch_size,
        "out": str(out),
        "progress": False,
        "checkpoint_every": 0,
        "workers": 0,
    }
    train(resolve("pretrain", cli=options))
    (line,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return line


def test_an_epoch_reports_how_data_bound_it_was(tmp_path: Path) -> None:
    """Big JPEGs decoded for a tiny model: the epoch is mostly waiting on the loader. The same
    model on in-memory 8x8 digits waits far less."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.jpg", quality=90)
    slow = _run(tmp_path, "photos_run", str(tmp_path / "photos"), 8)
    fast = _run(tmp_path, "digits_run", "digits", 64)
    for line in (slow, fast):
        assert line["data_wait_s"] + line["compute_s"] == pytest.approx(line["seconds"])
        assert 0.0 <= line["data_bound_share"] <= 1.0
    assert slow["data_bound_share"] > 0.5, slow
    assert fast["data_bound_share"] < slow["data_bound_share"], (fast, slow)
