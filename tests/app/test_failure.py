"""The app once it cannot go on, in process (the real app, model and batcher): /readyz fails at
once, /classify refuses, and the server is asked to stop, then the process to end. How a real
process exits: test_serve_watchdog.py and test_serve_model_checks.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from imagefiles import encode, photo

from app.main import create_app
from app.settings import Settings


def test_a_dead_batcher_fails_readyz_and_stops_the_server(tiny_model_dir: Path) -> None:
    settings = Settings(
        model_dir=tiny_model_dir, providers="cpu", intra_op_threads=1, request_timeout_s=0.5
    )
    app = create_app(settings)
    stopped, ended = threading.Event(), threading.Event()
    app.state.failure.stop_server = stopped.set
    app.state.failure.end_process = ended.set
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        batcher = app.state.repository.runtime().batcher
        client.portal.call(batcher._task.cancel)  # what a bug that ends the loop does
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "failed"
        assert ready.headers["retry-after"] == "1"
        image = encode(photo(), "PNG")
        refused = client.post("/classify", content=image, headers={"content-type": "image/png"})
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert app.state.failure.reason == "the batcher task was cancelled"
        assert stopped.is_set()
        assert ended.wait(10)  # after the grace period: request_timeout_s + 5 s
