"""The load benchmark runs end to end (slow: it exports ViT-Ti/16 and drives wrk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "serve_bench.py"),
            "--duration=5",
            "--concurrency",
            "1",
            "32",
            f"--out={out}",
        ],
        check=True,
        cwd=REPO,
        timeout=900,
    )
    results = json.loads(out.read_text())
    assert results["raw"]["images_per_s"] > 0
    for name in ("batching", "naive"):
        assert [row["concurrency"] for row in results[name]] == [1, 32]
        assert all(row["errors"] == 0 and row["requests_per_s"] > 0 for row in results[name])
    assert results["batching"][1]["mean_batch"] > 1  # concurrent requests share session runs
    assert all(row["mean_batch"] == 1 for row in results["naive"])
