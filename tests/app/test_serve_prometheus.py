"""/metrics: the names the issue fixes, `promtool check metrics`, and a real Prometheus scrape.

Debian's `prometheus` package provides both binaries (.ci/run installs it); no skip: a missing
binary fails the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
from imagefiles import encode, photo

NAMES = [
    "vitserve_requests_total",
    "vitserve_request_duration_seconds",
    "vitserve_images_total",
    "vitserve_batch_size",
    "vitserve_queue_wait_seconds",
    "vitserve_inference_duration_seconds",
    "vitserve_preprocess_duration_seconds",
    "vitserve_queue_depth",
    "vitserve_rejected_total",
    "vitserve_model_info",
]


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install -y prometheus"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exercise(server) -> None:
    image = encode(photo(), "PNG")
    server.client.post("/classify", content=image, headers={"content-type": "image/png"})
    server.client.post("/classify", content=b"", headers={"content-type": "image/png"})
    server.client.get("/nowhere")


def test_metric_names_and_labels(server) -> None:
    exercise(server)
    text = server.client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {
        line.split()[2]: line.split()[3] for line in text.text.splitlines() if "# TYPE" in line
    }
    expected_types = {
        "vitserve_requests_total": "counter",
        "vitserve_images_total": "counter",
        "vitserve_rejected_total": "counter",
        "vitserve_queue_depth": "gauge",
        "vitserve_model_info": "gauge",
    }
    for name in NAMES:
        family = name.removesuffix("_total")
        assert families.get(family) or families.get(name), f"{name} missing"
    for name, kind in expected_types.items():
        assert families.get(name.removesuffix("_total"), families.get(name)) == kind
    for name in NAMES[1:7]:
        if name.endswith("_total"):
            continue
        assert families[name] == "histogram", name
    assert server.metric("vitserve_requests_total", 'route="/classify",status="200"') >= 1
    assert server.metric("vitserve_requests_total", 'route="unmatched",status="404"') >= 1
    assert server.metric("vitserve_rejected_total", 'reason="invalid"') >= 1
    assert server.metric("vitserve_batch_size_bucket", 'le="32.0"') >= 1
    assert (
        server.metric(
            "vitserve_model_info",
            'name="vit-tiny-test",providers="CPUExecutionProvider",version="1"',
        )
        == 1
    )


def test_promtool_accepts_the_metrics(server) -> None:
    exercise(server)
    text = server.client.get("/metrics").text
    check = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_prometheus_scrapes_the_service(server, tmp_path: Path) -> None:
    exercise(server)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: vitserve\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        result: list[dict] = []
        while not result:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.5)
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'vitserve_requests_total{route="/classify"}'},
                    timeout=5,
                ).json()
            except httpx.TransportError:
                continue
            assert answer["status"] == "success", answer
            result = answer["data"]["result"]
        statuses = {sample["metric"]["status"] for sample in result}
        assert {"200", "400"} <= statuses
        assert all(sample["metric"]["job"] == "vitserve" for sample in result)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
