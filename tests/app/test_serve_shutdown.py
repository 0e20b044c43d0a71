"""SIGTERM under load: the server stops accepting, answers every accepted request, exits."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from imagefiles import encode, photo

IMAGE = encode(photo(), "PNG")
IN_FLIGHT = 40


def test_sigterm_loses_no_accepted_request(start_server) -> None:
    # Images wait up to 2 s for a batch of 64 to fill: SIGTERM finds them all still queued.
    server = start_server(max_batch_size=64, max_queue=256, max_wait_ms=2000)

    def post(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(
                "/classify", content=IMAGE, headers={"content-type": "image/png"}
            )
            return response.status_code

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(post, i) for i in range(IN_FLIGHT)]
        deadline = time.monotonic() + 10
        while server.metric("vitserve_queue_depth") < IN_FLIGHT:
            assert time.monotonic() < deadline, "the requests were not all admitted"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.2)
        try:  # no longer accepting
            httpx.get(f"{server.url}/healthz", timeout=2)
            raise AssertionError("the server still accepts connections after SIGTERM")
        except httpx.ConnectError:
            pass
        statuses = [future.result() for future in futures]
    assert statuses == [200] * IN_FLIGHT
    server.process.wait(timeout=20)
    assert time.monotonic() - sent < 15
    assert "Traceback" not in server.log()


def test_a_stop_delay_fails_readiness_but_serves_until_it_ends(start_server) -> None:
    server = start_server(stop_delay_s=3)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.3)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "stopping"
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/healthz").status_code == 200  # alive: no restart
        # Still serving, on this kept-alive connection and on new ones.
        classified = client.post("/classify", content=IMAGE, headers={"content-type": "image/png"})
        assert classified.status_code == 200
        assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
        assert time.monotonic() - sent < 2.5, "too slow to tell the delay from a stop"
    assert server.process.wait(timeout=20) is not None
    assert time.monotonic() - sent >= 3
    assert "Traceback" not in server.log()


def test_sigint_stops_at_once_despite_a_stop_delay(start_server) -> None:
    server = start_server(stop_delay_s=30)
    server.process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    server.process.wait(timeout=20)
    assert time.monotonic() - sent < 10
