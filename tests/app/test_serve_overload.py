"""Overload, clients that leave, and readiness, on real servers with slow batches (timeouts:
test_serve_watchdog.py, with a model whose runs never end)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from imagefiles import encode, photo

IMAGE = encode(photo(), "PNG")


def files(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", IMAGE, "image/png")) for i in range(count)]


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_overload_client_gone_and_recovery(start_server) -> None:
    # A batch of 8 that waits up to 3 s to fill; the queue holds one batch.
    server = start_server(max_batch_size=8, max_queue=8, max_wait_ms=3000, request_timeout_s=10)
    responses: dict[str, httpx.Response] = {}

    def post(name: str, count: int) -> None:
        responses[name] = server.client.post("/classify", files=files(count))

    waiting = threading.Thread(target=post, args=("waiting", 7))
    waiting.start()
    wait_for(lambda: server.metric("vitserve_queue_depth") == 7)

    started = time.monotonic()
    full = server.client.post("/classify", files=files(2))
    assert time.monotonic() - started < 0.5, "a full queue must refuse at once"
    assert full.status_code == 503
    assert full.json()["error"]["code"] == "overloaded"
    assert int(full.headers["retry-after"]) >= 1
    assert server.client.post("/classify", files=files(9)).status_code == 413

    waiting.join()
    assert responses["waiting"].status_code == 200  # its batch closed after 3 s, not full
    assert server.metric("vitserve_queue_depth") == 0

    # A client that hangs up: its image is dropped before it costs compute.
    with pytest.raises(httpx.ReadTimeout):
        server.client.post("/classify", files=files(1), timeout=0.3)
    wait_for(lambda: server.metric("vitserve_rejected_total", 'reason="client_gone"') == 1)
    wait_for(lambda: server.metric("vitserve_queue_depth") == 0)

    # Recovered: a full batch runs at once.
    recovered = server.client.post("/classify", files=files(8))
    assert recovered.status_code == 200 and len(recovered.json()["results"]) == 8
    assert server.metric("vitserve_batch_size_count") == 2  # nothing else was computed
    assert server.metric("vitserve_rejected_total", 'reason="queue_full"') == 1
    assert server.metric("vitserve_requests_total", 'route="/classify",status="503"') == 1


def test_not_ready_until_warmed_up(start_server) -> None:
    # A warm-up that takes far longer than the test: the server is alive but not ready.
    server = start_server(wait="/healthz", max_batch_size=256, max_queue=256, warmup_runs=10**6)
    assert server.client.get("/healthz").status_code == 200
    ready = server.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    refused = server.client.post("/classify", content=IMAGE, headers={"content-type": "image/png"})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "not_ready"
    assert "retry-after" in refused.headers
    started = time.monotonic()
    server.stop(timeout=20)  # SIGTERM cancels the warm-up between runs
    assert time.monotonic() - started < 10
