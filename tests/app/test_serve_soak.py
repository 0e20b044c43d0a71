"""A soak: 10,000 requests, valid and hostile mixed, through one real server. Its RSS after the
run stays within 5 % of its RSS after the first 1,000 (no leak), and nothing gets a 5xx."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from imagefiles import bad_files, encode, photo, png_bomb
from watch import status_kib

if TYPE_CHECKING:  # types only: which file `conftest` names depends on how pytest starts
    from app_processes import StartServer

TOTAL = 10_000
WARM = 1_000
CLIENTS = 8

Request = Callable[[httpx.Client], httpx.Response]


def requests() -> list[tuple[str, Request]]:
    """The mix: a third valid images of several kinds, the rest each kind of bad request."""
    rng = np.random.default_rng(0)
    valid = [
        encode(photo(64, 48, seed=1), "PNG"),
        encode(photo(320, 240, seed=2), "JPEG", quality=85),
        encode(photo(31, 700, seed=3), "WEBP"),
        png_bomb(50_000, 1),
    ]
    kinds: list[tuple[str, Request]] = []
    for index, data in enumerate(valid):
        kinds.append((f"valid {index}", lambda c, d=data: c.post("/classify", files={"file": d})))
        kinds.append(
            (
                f"valid raw {index}",
                lambda c, d=data: c.post(
                    "/classify?attention=png", content=d, headers={"content-type": "image/png"}
                ),
            )
        )
    for name, (data, status, _) in bad_files().items():
        if status != 200:
            kinds.append((name, lambda c, d=data: c.post("/classify", files={"file": d})))
    kinds += [
        ("random bytes", lambda c: c.post("/classify", files={"file": rng.bytes(2048)})),
        ("no file part", lambda c: c.post("/classify", files={"other": b"x"})),
        ("bad top_k", lambda c: c.post("/classify?top_k=0", files={"file": valid[0]})),
        ("text body", lambda c: c.post("/classify", content=b"x", headers={"content-type": "a/b"})),
        (
            "long boundary",
            lambda c: c.post(
                "/classify",
                content=b"--" + b"x" * 300,
                headers={"content-type": "multipart/form-data; boundary=" + "x" * 300},
            ),
        ),
        ("part flood", lambda c: c.post("/classify", files=[("a", b"x")] * 300)),
    ]
    return kinds


@pytest.mark.slow
def test_soak_has_no_leak(start_server: StartServer) -> None:
    server = start_server(max_upload_bytes=2_000_000)
    kinds = requests()
    statuses: Counter[int] = Counter()
    rss_kib: dict[int, int] = {}
    started = time.perf_counter()

    def run(count: int) -> None:
        def one(index: int) -> int:
            name, send = kinds[index % len(kinds)]
            return send(clients[index % CLIENTS]).status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            for status in pool.map(one, range(count)):
                statuses[status] += 1

    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them (httpx keeps
    # them 5 s too: a request on a connection the server is closing gets no answer).
    limits = httpx.Limits(keepalive_expiry=2.0)
    clients = [httpx.Client(base_url=server.url, timeout=60, limits=limits) for _ in range(CLIENTS)]
    try:
        run(WARM)
        rss_kib[WARM] = status_kib(server.process.pid, "VmRSS")
        run(TOTAL - WARM)
        rss_kib[TOTAL] = status_kib(server.process.pid, "VmRSS")
    finally:
        for client in clients:
            client.close()
    elapsed = time.perf_counter() - started
    growth = rss_kib[TOTAL] / rss_kib[WARM] - 1
    print(
        f"soak: {TOTAL} requests in {elapsed:.0f} s, statuses {dict(sorted(statuses.items()))}, "
        f"RSS after {WARM}: {rss_kib[WARM] / 1024:.1f} MB, after {TOTAL}: "
        f"{rss_kib[TOTAL] / 1024:.1f} MB ({growth:+.1%})"
    )
    assert sum(statuses.values()) == TOTAL
    assert not [status for status in statuses if status >= 500 and status != 503], statuses
    assert abs(growth) <= 0.05
