"""The Grafana dashboard and the alerting rules against a real Prometheus that has scraped a real
server under a short load with errors and an overload burst: every panel's query, with Grafana's
variables substituted, parses and returns at least one series; every metric it names is one the
app exports; every alerting rule loads and evaluates."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagefiles import encode, photo

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "vitserve.json"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"

# What Grafana puts in place of its variables, as the issue fixes them.
VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
METRIC = re.compile(r"\bvitserve_[a-z0-9_]+")
IMAGE = encode(photo(), "PNG")


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query, rows' nested panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        pytest.fail(f"a Grafana variable the test does not know is left in {expr!r}")
    return expr


def files(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", IMAGE, "image/png")) for i in range(count)]


def load(server) -> None:
    """A few rounds of good requests, bad input, and an overload burst: a request that waits
    for its batch to fill keeps the queue nearly full, so the next one is refused (503)."""
    client = server.client
    for _ in range(2):
        client.post("/classify", files=files(1))
        client.post("/classify", content=IMAGE, headers={"content-type": "image/png"})
        client.post("/classify", content=b"not an image", headers={"content-type": "image/png"})
        client.post("/classify?top_k=0", files=files(1))
        client.get("/nowhere")
        waiting = threading.Thread(
            target=client.post, args=("/classify",), kwargs={"files": files(7)}
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while server.metric("vitserve_queue_depth") < 7:
            assert time.monotonic() < deadline, "the 7 images never reached the queue"
            time.sleep(0.01)
        refused = httpx.post(f"{server.url}/classify", files=files(2), timeout=10)
        assert refused.status_code == 503, refused.text
        waiting.join()


@pytest.fixture(scope="module")
def prometheus(start_server, start_prometheus):
    """Prometheus with the alerting rules, having scraped a server through `load`."""
    # A batch waits 2.5 s to fill: time enough, on a busy machine, for the refused request.
    server = start_server(max_batch_size=8, max_queue=8, max_wait_ms=2500)
    prometheus = start_prometheus([server.port], rule_files=(ALERTS,))
    prometheus.wait_for('up{job="vitserve"} == 1')
    load(server)
    # Scraped after the load, and twice within the last minute (rate() needs two samples).
    prometheus.wait_for('vitserve_rejected_total{reason="queue_full"} >= 2')
    prometheus.wait_for("count_over_time(vitserve_images_total[1m]) >= 2")
    prometheus.server = server
    return prometheus


def test_every_panel_query_returns_series(prometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = list(panel_targets(dashboard))
    assert len(targets) >= 15
    empty = [(title, expr) for title, expr in targets if not prometheus.query(substitute(expr))]
    assert not empty, f"panels whose query returns no series: {empty}"
    # The check can fail: a metric the app does not export returns nothing.
    assert prometheus.query("vitserve_not_exported_total") == []


def test_every_metric_a_panel_names_is_exported(prometheus) -> None:
    exposition = prometheus.server.client.get("/metrics").text
    exported = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    dashboard = json.loads(DASHBOARD.read_text())
    named = {name for _, expr in panel_targets(dashboard) for name in METRIC.findall(expr)}
    assert named - exported == set()
    for variable in dashboard["templating"]["list"]:
        assert set(METRIC.findall(variable["definition"])) <= exported


def test_the_model_variable_lists_the_model(prometheus) -> None:
    # label_values(vitserve_model_info, name), as Grafana asks Prometheus for it.
    values = prometheus.api("label/name/values", **{"match[]": "vitserve_model_info"})
    assert values == ["vit-tiny-test"]


def test_every_alerting_rule_loads_and_evaluates(prometheus) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    names = {rule["name"] for rule in rules()}
    assert names == {
        "VitserveDown",
        "VitserveNotReady",
        "VitserveServerErrors",
        "VitserveOverloaded",
        "VitserveSlowRequests",
        "VitserveQueueNearlyFull",
    }
    prometheus.wait_for('ALERTS{alertname="VitserveOverloaded"} or vector(1)')  # evaluated once
    unhealthy = [
        (rule["name"], rule.get("lastError")) for rule in rules() if rule["health"] != "ok"
    ]
    assert not unhealthy
    # The overload burst is real: its ratio is well above the alert's 5% (pending, not firing,
    # since `for: 5m` has not passed).
    pending = {alert["labels"]["alertname"] for rule in rules() for alert in rule["alerts"]}
    assert "VitserveOverloaded" in pending
    assert "VitserveDown" not in pending and "VitserveNotReady" not in pending
