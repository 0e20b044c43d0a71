"""bench/train_throughput.py in its CPU mode, at a tiny size: the table it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--arch", "vit_tiny_patch4_32", "--depth", "1", "--num-classes", "10"]
TINY += ["--batch-size", "4", "--steps", "2", "--rounds", "2", "--warmup", "1"]


def _bench(tmp_path: Path, *extra: str) -> list[list[str]]:
    out = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, "bench/train_throughput.py", *TINY, *extra, "--out", str(out)],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text in done.stdout
    assert text.startswith("CPU; torch ")
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| vit")]
    return [[cell.strip() for cell in row] for row in rows]


def test_cpu_mode_compares_ours_with_timm_eager(tmp_path: Path) -> None:
    rows = _bench(tmp_path)
    assert [(row[3], row[4].split()[0]) for row in rows] == [
        ("eager", "vitserve"),
        ("eager", "timm"),
    ]
    for arch, batch, precision, _, _, rate, memory, first, ratio in rows:
        assert (arch, batch, precision, memory) == ("vit_tiny_patch4_32", "4", "fp32", "n/a")
        assert float(rate.split()[0]) > 0 and float(first) >= 0 and float(ratio) > 0
    assert rows[0][-1] == "1.000"


@pytest.mark.slow
def test_cpu_mode_compiles_both_models(tmp_path: Path) -> None:
    rows = _bench(tmp_path, "--compile", "both")
    assert [row[3] for row in rows] == ["eager", "eager", "compiled", "compiled"]
    assert all(float(row[5].split()[0]) > 0 for row in rows)
