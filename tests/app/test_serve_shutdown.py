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
