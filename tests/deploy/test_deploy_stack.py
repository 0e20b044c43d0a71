"""The real stack, CPU variant: build the images, `docker compose up`, classify an image, and see
Prometheus scrape the API. Slow (about 2 minutes here, plus debootstrap once on a new machine):

    .venv/bin/python -m pytest -m slow tests/deploy/test_deploy_stack.py

It runs on the stack tests' engine (docker_engine.py: a private dockerd with its default bridge)
and images (compose_stack.py: a debootstrapped Debian base, Prometheus from Debian's package),
docker-compose.yml + docker-compose.cpu.yml as they are, with the API and Prometheus published
on free loopback ports.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from compose_stack import Stack, running, write_test_override
from deploy_tools import COMPOSE_FILE, CPU_FILE, Compose, free_port, http, png, wait_for
from docker_engine import Engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROJECT = "vitserve-stacktest"


@pytest.fixture(scope="module")
def stack(
    compose: Compose, built: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, int, int]]:
    api_port, prometheus_port = free_port(), free_port()
    override = write_test_override(
        tmp_path_factory.mktemp("stack"),
        {"api": f"127.0.0.1:{api_port}:8000", "prometheus": f"127.0.0.1:{prometheus_port}:9090"},
        quick_checks=("prometheus",),
    )
    project = Stack(compose, built, PROJECT, (COMPOSE_FILE, CPU_FILE, override))
    with running(project):
        yield project, api_port, prometheus_port


def test_api_runs_as_a_non_root_user_without_torch(stack) -> None:
    compose_stack, _, _ = stack
    uid = compose_stack("exec", "-T", "api", "id", "-u").stdout.strip()
    assert uid == "10001"
    find_torch = "import importlib.util as u; print(u.find_spec('torch'))"
    has_torch = compose_stack("exec", "-T", "api", "python", "-c", find_torch)
    assert has_torch.stdout.strip() == "None"


def test_api_is_healthy(stack) -> None:
    compose_stack, _, _ = stack
    health = compose_stack.health()
    assert health == {f"{PROJECT}-api-1": "healthy", f"{PROJECT}-prometheus-1": "healthy"}


def test_classify_and_prometheus_scrapes_it(stack) -> None:
    _, api_port, prometheus_port = stack
    api = f"http://127.0.0.1:{api_port}"
    prometheus = f"http://127.0.0.1:{prometheus_port}"

    status, body = http(f"{api}/classify", data=png(), headers={"Content-Type": "image/png"})
    assert status == 200, body
    result = json.loads(body)
    assert len(result["results"]) == 1
    assert result["results"][0]["predictions"]

    status, body = http(f"{api}/v1/models")
    assert status == 200, body

    def target_up() -> bool:
        _, body = http(f"{prometheus}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        return any(t["labels"]["job"] == "vitserve" and t["health"] == "up" for t in targets)

    wait_for("Prometheus to scrape the API", target_up, timeout=60)

    def images_counted() -> float:
        query = urllib.parse.urlencode({"query": 'sum(vitserve_images_total{job="vitserve"})'})
        _, body = http(f"{prometheus}/api/v1/query?{query}")
        series = json.loads(body)["data"]["result"]
        return float(series[0]["value"][1]) if series else 0.0

    assert wait_for("the classified image in Prometheus", images_counted, timeout=60) >= 1
