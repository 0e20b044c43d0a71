"""The model the service bundles: `pipeline --preset default` (minutes; run with -m slow)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

MAX_ONNX_BYTES = 10 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_default_preset(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "default"
    done = run_cli("pipeline", "--preset", "default", "--out", str(out), timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert report["data"] == "mnist" and report["num_images"] == 1000
    assert report["top1"] >= 0.95, report["top1"]  # 0.980 measured (docs/training.md)
    exported = json.loads((out / "model" / "config.json").read_text())
    assert exported["metrics"]["top1"] == report["top1"] and exported["name"] == "vit-tiny-mnist"
    assert (out / "model" / "model.onnx").stat().st_size <= MAX_ONNX_BYTES
