"""A session run that never ends: its request times out (504), the watchdog
(VITSERVE_RUN_TIMEOUT_S) fails /readyz, and the process exits non-zero so that a restart policy
starts a fresh one. The model is real: an onnxruntime Loop that runs forever on bright images
(model_dirs.with_endless_runs); the warm-up (zeros) is fast and not watched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from imagefiles import encode, photo
from model_dirs import with_endless_runs
from PIL import Image

from app.failure import EXIT_STATUS

BRIGHT = encode(photo(), "PNG")
BLACK = encode(Image.new("RGB", (32, 32)), "PNG")


@pytest.fixture(scope="module")
def endless_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_endless_runs(tiny_model_dir, tmp_path_factory.mktemp("endless") / "model")


def classify(server, image: bytes):
    return server.client.post("/classify", content=image, headers={"content-type": "image/png"})


def test_a_hung_run_ends_the_process(start_server, endless_model_dir: Path) -> None:
    server = start_server(
        model_dir=endless_model_dir,
        request_timeout_s=1.5,
        run_timeout_s=2.5,
        max_wait_ms=0,
    )
    assert classify(server, BLACK).status_code == 200  # dark images run at once

    started = time.monotonic()
    hung = classify(server, BRIGHT)
    assert hung.status_code == 504 and hung.json()["error"]["code"] == "timeout"
    assert server.client.get("/readyz").status_code == 200  # not yet: 1.5 s of 2.5

    # Then /readyz fails (503 `failed`; test_failure.py) and the server stops accepting.
    code = server.process.wait(timeout=30)
    assert time.monotonic() - started >= 2.5
    assert code == EXIT_STATUS
    log = server.log()
    assert "has not returned after 2.5 s (VITSERVE_RUN_TIMEOUT_S)" in log, log
    assert "exiting" in log
