"""bench/gpu_bench.py keeps working: its CPU mode on the tests' model, every stage that runs
on a CPU, rows printed as Markdown tables (the GPU figures come from a GPU host)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_bench_cpu_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu_bench.py"),
            "--device=cpu",
            f"--model-dir={tiny_model_dir}",
            "--seconds=0.3",
            "--server-seconds=1",
            "--check-images=200",
            f"--json={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    raw = [row for row in rows if row["stage"] == "raw"]
    assert {(row["graph"], row["batch"]) for row in raw} == {
        (graph, batch) for graph in ("served fp32", "served fp16") for batch in (1, 8)
    }
    assert all(row["img/s"] > 0 for row in raw)
    (server,) = [row for row in rows if row["stage"] == "server"]
    assert server["img/s"] > 0 and server["errors"] == 0 and server["mean batch"] >= 1
    (trt,) = [row for row in rows if row["stage"] == "tensorrt"]
    assert trt["note"].startswith("skipped")
    (precision,) = [row for row in rows if row["stage"] == "precision"]
    assert precision["images"] == 200 and float(precision["top-1 agreement"][:-1]) >= 99.5
    assert "| served fp16 | 8 |" in done.stdout and "### server end to end" in done.stdout
