"""/metrics: the names the issue fixes, `promtool check metrics`, and a real Prometheus scrape.

Debian's `prometheus` package provides both binaries (.ci/run installs it); no skip: a missing
binary fails the test.
"""

from __future__ import annotations

import subprocess

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
    "vitserve_model_ready",
    "vitserve_queue_capacity",
]


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
        "vitserve_model_ready": "gauge",
        "vitserve_queue_capacity": "gauge",
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
    assert server.metric("vitserve_model_ready", 'model="vit-tiny-test",version="1"') == 1
    capacity = server.metric("vitserve_queue_capacity", 'model="vit-tiny-test",version="1"')
    assert capacity == 256  # VITSERVE_MAX_QUEUE's default
    assert (
        server.metric(
            "vitserve_model_info",
            'name="vit-tiny-test",providers="CPUExecutionProvider",version="1"',
        )
        == 1
    )


def test_promtool_accepts_the_metrics(server, promtool: str) -> None:
    exercise(server)
    text = server.client.get("/metrics").text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_prometheus_scrapes_the_service(server, start_prometheus) -> None:
    exercise(server)
    prometheus = start_prometheus([server.port])
    result = prometheus.wait_for('vitserve_requests_total{route="/classify"}')
    statuses = {sample["metric"]["status"] for sample in result}
    assert {"200", "400"} <= statuses
    assert all(sample["metric"]["job"] == "vitserve" for sample in result)
