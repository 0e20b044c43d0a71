"""Zero-downtime version swaps in poll mode, under load: 16 clients classify without pause while
version 2 is copied into the repository (copy under a dot-name, then rename), then a broken
version 3. Every answer is a 200; each comes from version 1 until the switch and from version 2
after it (no request that starts after a version-2 answer gets version 1); version 3 is never
served; /readyz says ready throughout."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
from app_processes import make_repository
from imagefiles import encode, photo

CLIENTS = 16
POLL_S = 0.5


def publish(source: Path, model_dir: Path, version: int, break_it: bool = False) -> None:
    """The documented procedure: copy under a name starting with '.', then rename into place."""
    staging = model_dir / f".incoming-{version}"
    shutil.copytree(source, staging)
    if break_it:
        (staging / "model.onnx").write_bytes(b"not an onnx model")
    staging.rename(model_dir / str(version))


def test_swap_under_load(start_server, tiny_model_dir: Path, tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "repository", {"vit-tiny-test": {1: tiny_model_dir}})
    server = start_server(model_repository=repository, repository_poll_s=POLL_S)
    image = encode(photo(40, 40), "PNG")
    stop = threading.Event()
    answers: list[tuple[float, float, int, str | None]] = []  # (sent, answered, status, version)
    readiness: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                response = http.post(
                    "/classify", content=image, headers={"content-type": "image/png"}
                )
                version = response.json()["model"]["version"] if response.is_success else None
                answers.append((sent, time.monotonic(), response.status_code, version))

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                readiness.append(http.get("/readyz").status_code)
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=probe))
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(answers) < 2 * CLIENTS:  # version 1 serves the clients first
            assert time.monotonic() < deadline, "the clients got no answers"
            time.sleep(0.1)
        publish(tiny_model_dir, repository / "vit-tiny-test", 2)
        while not any(version == "2" for *_, version in answers[-CLIENTS:]):
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.1)
        time.sleep(1.0)
        publish(tiny_model_dir, repository / "vit-tiny-test", 3, break_it=True)
        failed = 'model="vit-tiny-test",outcome="failed"'
        while not _metric_or_zero(server, "vitserve_model_loads_total", failed):
            assert time.monotonic() < deadline, "version 3 was never tried"
            time.sleep(0.1)
        time.sleep(2 * POLL_S)  # a few more polls: it is not retried, nothing changes
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    statuses = {status for _, _, status, _ in answers}
    assert statuses == {200}, f"non-200 answers during the swap: {statuses}"
    versions = [version for *_, version in answers]
    assert set(versions) == {"1", "2"}, set(versions)
    first_v2_answered = min(answered for _, answered, _, v in answers if v == "2")
    late_v1 = [sent for sent, _, _, v in answers if v == "1" and sent > first_v2_answered]
    assert not late_v1, f"{len(late_v1)} requests got version 1 after version 2 answered"
    assert readiness and set(readiness) == {200}, set(readiness)
    index = {row["version"]: row for row in server.client.post("/v2/repository/index").json()}
    assert index["2"]["state"] == "READY" and index["3"]["state"] == "UNAVAILABLE"
    assert index["3"]["reason"]
    assert server.metric("vitserve_model_loads_total", failed) == 1
    assert len(answers) > 100


def _metric_or_zero(server, name: str, labels: str) -> float:
    try:
        return server.metric(name, labels)
    except KeyError:
        return 0.0
