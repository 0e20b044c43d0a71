"""Several replicas behind the load balancer, for real: docker-compose.yml + docker-compose.cpu.yml
+ docker-compose.scale.yml with `--scale api=2`, HAProxy (docker/haproxy.cfg) published on
loopback, Prometheus discovering the replicas by DNS. Slow (about 2 minutes after the images of
test_deploy_stack.py; it shares their engine and images):

    .venv/bin/python -m pytest -m slow tests/deploy/test_deploy_scale.py -s
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from compose_stack import Stack, running, write_test_override
from deploy_tools import (
    COMPOSE_FILE,
    CPU_FILE,
    SCALE_FILE,
    Compose,
    free_port,
    http,
    png,
    wait_for,
)
from docker_engine import Engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROJECT = "vitserve-scaletest"
REPLICAS = 2
CLIENTS = 8
IMAGES_TOTAL = re.compile(r"^vitserve_images_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
READ_METRICS = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=10).read().decode())"
)


@dataclass
class ScaleStack:
    stack: Stack
    lb: str  # the LB's HTTP address on the host
    lb_grpc: str  # host:port of its gRPC listener
    prometheus: str

    def replicas(self) -> list[str]:
        """Names of the running API containers."""
        return [row["Name"] for row in self.stack.containers("api") if row["State"] == "running"]

    def images_by_replica(self) -> dict[str, float]:
        """Each running replica's own vitserve_images_total, read inside its container."""
        counts = {}
        for name in self.replicas():
            text = self.stack.docker("exec", name, "python", "-c", READ_METRICS).stdout
            counts[name] = sum(float(value) for value in IMAGES_TOTAL.findall(text))
        return counts

    def lb_metric(self, name: str, proxy: str) -> float:
        """One of HAProxy's own metrics for `proxy`, from its exporter inside the LB container."""
        (lb,) = [row["Name"] for row in self.stack.containers("lb")]
        url = "http://127.0.0.1:8404/metrics"
        text = self.stack.docker("exec", lb, "wget", "-q", "-O", "-", url).stdout
        match = re.search(rf'^{name}\{{proxy="{proxy}"\}} (\S+)$', text, re.MULTILINE)
        if match is None:
            raise ValueError(f"{name} for {proxy} not in the LB's metrics")
        return float(match.group(1))

    def lb_state(self) -> tuple[str, int]:
        (lb,) = [row["Name"] for row in self.stack.containers("lb")]
        inspect = self.stack.docker("inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", lb)
        started, restarts = inspect.stdout.split()
        return started, int(restarts)

    def prometheus_query(self, query: str) -> list[dict]:
        encoded = urllib.parse.urlencode({"query": query})
        _, body = http(f"{self.prometheus}/api/v1/query?{encoded}")
        return json.loads(body)["data"]["result"]


@pytest.fixture(scope="module")
def scaled(
    compose: Compose, built: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScaleStack]:
    lb_port, lb_grpc_port, prometheus_port = free_port(), free_port(), free_port()
    engine = built.with_env(
        VITSERVE_API_PORT=str(lb_port), VITSERVE_API_GRPC_PORT=str(lb_grpc_port)
    )
    override = write_test_override(
        tmp_path_factory.mktemp("scale"),
        {"prometheus": f"127.0.0.1:{prometheus_port}:9090"},
        quick_checks=("prometheus", "lb"),
    )
    files = (COMPOSE_FILE, CPU_FILE, SCALE_FILE, override)
    stack = Stack(compose, engine, PROJECT, files)
    with running(stack, "--scale", f"api={REPLICAS}"):
        scale = ScaleStack(
            stack,
            f"http://127.0.0.1:{lb_port}",
            f"127.0.0.1:{lb_grpc_port}",
            f"http://127.0.0.1:{prometheus_port}",
        )
        wait_for(
            "the LB to have every replica in rotation",
            lambda: scale.lb_metric("haproxy_backend_active_servers", "replicas_http") == REPLICAS,
            timeout=60,
        )
        yield scale


def classify(lb: str, image: bytes) -> int:
    try:
        status, _ = http(f"{lb}/classify", data=image, headers={"Content-Type": "image/png"})
    except OSError:  # reset or refused: a failed request all the same
        return 0
    return status


@dataclass
class Answer:
    sent: float
    answered: float
    status: int


class Load:
    """CLIENTS threads classifying through the LB, one request after another, until stopped."""

    def __init__(self, lb: str) -> None:
        self.lb, self.image = lb, png()
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            status = classify(self.lb, self.image)
            self.answers.append(Answer(sent, time.monotonic(), status))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_requests_spread_over_every_replica(scaled: ScaleStack) -> None:
    before = scaled.images_by_replica()
    assert len(before) == REPLICAS

    image = png()
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda _: classify(scaled.lb, image), range(200)))

    assert statuses == [200] * 200
    after = scaled.images_by_replica()
    served = {name: after[name] - before[name] for name in after}
    assert sum(served.values()) == 200
    assert all(count > 0 for count in served.values()), served

    # Prometheus finds each replica by DNS and scrapes it as its own target.
    def replicas_counted() -> dict[str, float]:
        series = scaled.prometheus_query(
            'sum by (instance) (vitserve_images_total{job="vitserve"})'
        )
        counted = {row["metric"]["instance"]: float(row["value"][1]) for row in series}
        return counted if len(counted) == REPLICAS and sum(counted.values()) >= 200 else {}

    counted = wait_for("Prometheus to count both replicas", replicas_counted, timeout=90)
    assert sorted(counted.values()) == sorted(after.values())
    lb_up = scaled.prometheus_query('up{job="lb"}')
    assert [row["value"][1] for row in lb_up] == ["1"]


def test_grpc_through_the_lb_reaches_every_replica(scaled: ScaleStack) -> None:
    """The LB proxies gRPC (HTTP/2 cleartext) to the replicas' port 8001: tritonclient's gRPC
    client, unchanged, infers through it, and the calls are spread like HTTP requests."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    wait_for(
        "the LB's gRPC backend to have every replica",
        lambda: scaled.lb_metric("haproxy_backend_active_servers", "replicas_grpc") == REPLICAS,
        timeout=60,
    )
    before = scaled.images_by_replica()
    client = grpcclient.InferenceServerClient(url=scaled.lb_grpc)
    assert client.is_server_ready()
    (model,) = [m["name"] for m in client.get_model_repository_index(as_json=True)["models"]]
    shape = [
        int(d)
        for d in client.get_model_metadata(model, as_json=True)["inputs"][1]["shape"]
        if d != "-1"
    ]
    pixels = grpcclient.InferInput("pixel_values", [1, *shape], "FP32")
    pixels.set_data_from_numpy(np.zeros([1, *shape], dtype=np.float32))

    def infer(_: int) -> int:
        # One channel per call, as separate clients: HAProxy balances per request anyway.
        with grpcclient.InferenceServerClient(url=scaled.lb_grpc) as one:
            result = one.infer(model, [pixels])
        return result.as_numpy("probabilities").shape[0]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(infer, range(40)))
    assert answers == [1] * 40
    after = scaled.images_by_replica()
    served = {name: after[name] - before[name] for name in after}
    assert sum(served.values()) == 40
    assert all(count > 0 for count in served.values()), served


def test_a_stopped_replica_fails_no_request_and_comes_back(scaled: ScaleStack) -> None:
    lb_before = scaled.lb_state()
    first, stopped = scaled.replicas()

    with Load(scaled.lb) as load:
        time.sleep(3)
        stop_sent = time.monotonic()
        # SIGTERM: the replica fails /readyz and serves on for its stop delay (6 s), then drains.
        scaled.stack.docker("stop", "--time", "45", stopped)
        stop_done = time.monotonic()
        time.sleep(3)

    answers = load.answers
    failed = [answer for answer in answers if answer.status != 200]
    # The LB takes the replica out on its failed checks while it still serves, so no request
    # meets a closing connection; the requests it accepted are drained: none fails.
    assert failed == [], (len(answers), failed, stop_sent, stop_done)
    assert sum(answer.sent > stop_done for answer in answers) > 20  # the load went on after it
    assert scaled.replicas() == [first]
    wait_for(
        "the LB to take the stopped replica out",
        lambda: scaled.lb_metric("haproxy_backend_active_servers", "replicas_http") == 1,
        timeout=30,
    )

    # Scaling back to two starts it again; the LB finds it by DNS, without a restart.
    scaled.stack("up", "-d", "--no-recreate", "--wait", "--scale", f"api={REPLICAS}", timeout=400)
    assert scaled.replicas() == [first, stopped]
    wait_for(
        "the LB to take the replica back",
        lambda: scaled.lb_metric("haproxy_backend_active_servers", "replicas_http") == REPLICAS,
        timeout=60,
    )
    before = scaled.images_by_replica()
    image = png()
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda _: classify(scaled.lb, image), range(100)))
    assert statuses == [200] * 100
    after = scaled.images_by_replica()
    assert after[stopped] > before[stopped]
    assert scaled.lb_state() == lb_before  # same start, no restart


def test_with_no_replica_ready_the_lb_answers_503_with_retry_after(scaled: ScaleStack) -> None:
    """Last (it stops every replica): the LB's own 503 has the service's error shape and
    Retry-After, as a replica's own 503 does."""
    scaled.stack("stop", "--timeout", "10", "api", timeout=120)
    wait_for(
        "the LB to see no replica",
        lambda: scaled.lb_metric("haproxy_backend_active_servers", "replicas_http") == 0,
        timeout=30,
    )
    request = urllib.request.Request(
        f"{scaled.lb}/classify", data=png(), headers={"Content-Type": "image/png"}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 503
    assert answer.value.headers["Retry-After"] == "1"
    assert json.loads(answer.value.read())["error"]["code"] == "no_replica_ready"
