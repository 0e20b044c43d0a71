"""The real stack, CPU variant: build the images, `docker compose up`, classify an image, and see
Prometheus scrape the API. Slow (2 minutes here; 4 on a new machine, with debootstrap): run with

    .venv/bin/python -m pytest -m slow tests/deploy/test_deploy_stack.py

No registry is reachable here, so the base image is Debian bookworm made with debootstrap and
`docker import`, and Prometheus is docker/Dockerfile.prometheus (Debian's package) on that base.
Unless VITSERVE_TEST_DOCKER_HOST names an engine to use, the test starts its own dockerd (as
root) with its data under /tmp, without iptables or a bridge, and removes it afterwards (a
detached `rm`); so the stack runs with docker/compose.host-network.yml, on free loopback ports.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_tools import COMPOSE_FILE, CPU_FILE, DOCKER_DIR, HOST_NETWORK_FILE, ROOT, Compose

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BASE_IMAGE = "vitserve-test/bookworm:base"
SERVE_IMAGE = "vitserve-test/serve:latest"
PROMETHEUS_IMAGE = "vitserve-test/prometheus:latest"
PROJECT = "vitserve-stacktest"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
CACHE = Path(os.environ.get("VITSERVE_DEPLOY_CACHE", "/tmp/vitserve-deploy-cache"))
MIN_FREE_BYTES = 15 * 2**30  # vfs keeps a full copy of the filesystem per layer
TIMINGS: dict[str, float] = {}


def run(command: list[str], *, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    return done


class timed:
    """Adds the time spent in a `with` block to TIMINGS[name]."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = TIMINGS.get(self.name, 0.0) + time.monotonic() - self.start


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    """Calls `check` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}", pytrace=False)


def debian_mirror() -> str:
    """The Debian mirror that this machine's apt uses (VITSERVE_DEBIAN_MIRROR overrides)."""
    if mirror := os.environ.get("VITSERVE_DEBIAN_MIRROR"):
        return mirror
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        for uri in re.findall(r"(?:^deb|^URIs:)\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


# -- the engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_env(compose: Compose) -> Iterator[dict[str, str]]:
    """Environment for docker and docker compose, pointing at a running engine."""
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing: apt-get install docker.io", pytrace=False)
    env = dict(compose.env)
    if host := os.environ.get("VITSERVE_TEST_DOCKER_HOST"):
        env["DOCKER_HOST"] = host
        run(["docker", "version"], env=env, timeout=30)
        yield env
        return

    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is missing: apt-get install docker.io", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("starting dockerd needs root (or set VITSERVE_TEST_DOCKER_HOST)", pytrace=False)
    if shutil.disk_usage("/tmp").free < MIN_FREE_BYTES:
        pytest.fail(f"/tmp needs {MIN_FREE_BYTES / 2**30:.0f} GiB free for vfs", pytrace=False)

    home = Path(tempfile.mkdtemp(prefix="vitserve-dockerd-", dir="/tmp"))
    socket_path = home / "docker.sock"
    log = (home / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver=vfs",
            f"--data-root={home / 'data'}",
            f"--exec-root={home / 'exec'}",
            f"--pidfile={home / 'docker.pid'}",
            f"--host=unix://{socket_path}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env["DOCKER_HOST"] = f"unix://{socket_path}"
    try:
        with timed("start dockerd"):
            wait_for(
                "dockerd to answer",
                lambda: (
                    daemon.poll() is None
                    and subprocess.run(
                        ["docker", "version"], env=env, capture_output=True
                    ).returncode
                    == 0
                ),
                timeout=90,
            )
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        # dockerd leaves its default network namespace mounted under its exec root.
        mounts = Path("/proc/mounts").read_text().split("\n")
        for mount in sorted((line.split()[1] for line in mounts if line), reverse=True):
            if mount.startswith(f"{home}/"):
                subprocess.run(["umount", "--lazy", mount], check=False)
        # Deleting a few GB of vfs layers takes minutes where the disk discards freed blocks:
        # a detached `rm` does it, so the test run need not wait.
        subprocess.Popen(
            ["rm", "-rf", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


# -- the images --------------------------------------------------------------------------------


def base_rootfs_tar() -> Path:
    """Debian bookworm (minbase + python3, venv, CA certificates), debootstrapped once and kept
    as a tarball in CACHE, with this machine's extra CA certificates (an intercepting egress
    proxy's, where there is one) so that pip and apt in the builds trust what the host trusts."""
    tarball = CACHE / "bookworm-python3.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: apt-get install debootstrap", pytrace=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    rootfs.chmod(0o755)  # it becomes the image's /: mkdtemp's 0700 would lock out non-root
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            timeout=1200,
        )
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, rootfs / local_cas.relative_to("/"), dirs_exist_ok=True)
        shutil.copyfile(
            "/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt"
        )
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def stack_override(directory: Path, api_port: int, prometheus_port: int) -> Path:
    """This test's own override: the test's images, free ports, and a Prometheus config that
    is docker/prometheus.host.yml with those ports."""
    host_config = (DOCKER_DIR / "prometheus.host.yml").read_text()
    assert '"127.0.0.1:8000"' in host_config and '"localhost:9090"' in host_config
    prometheus_config = directory / "prometheus.yml"
    prometheus_config.write_text(
        host_config.replace('"127.0.0.1:8000"', f'"127.0.0.1:{api_port}"').replace(
            '"localhost:9090"', f'"localhost:{prometheus_port}"'
        )
    )
    prometheus_config.chmod(0o644)
    override = directory / "compose.test.yml"
    override.write_text(
        f"""\
services:
  api:
    environment:
      VITSERVE_PORT: "{api_port}"
  prometheus:
    build:
      context: {ROOT}
      dockerfile: docker/Dockerfile.prometheus
      network: host
      args:
        BASE_IMAGE: {BASE_IMAGE}
    command: !override
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.path=/prometheus
      - --web.listen-address=127.0.0.1:{prometheus_port}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{prometheus_port}/-/ready"]
      interval: 5s
    volumes: !override
      - {prometheus_config}:/etc/prometheus/prometheus.yml:ro
      - {DOCKER_DIR / "prometheus" / "alerts.yml"}:/etc/prometheus/prometheus/alerts.yml:ro
      - prometheus-data:/prometheus
"""
    )
    return override


class Stack:
    def __init__(self, compose: Compose, env: dict[str, str], override: Path) -> None:
        self.compose, self.env = compose, env
        self.files = (COMPOSE_FILE, CPU_FILE, HOST_NETWORK_FILE, override)

    def __call__(self, *args: str, timeout: float = 900, check: bool = True):
        return self.compose.run(*args, files=self.files, env=self.env, timeout=timeout, check=check)

    def logs(self) -> str:
        done = self("logs", "--no-color", "--tail", "200", check=False, timeout=60)
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def stack(
    compose: Compose, docker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, int, int]]:
    env = {
        **docker_env,
        "COMPOSE_PROJECT_NAME": PROJECT,
        "VITSERVE_SERVE_BASE_IMAGE": BASE_IMAGE,
        "VITSERVE_SERVE_IMAGE": SERVE_IMAGE,
        "VITSERVE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
    }
    with timed("debootstrap base (cached)"):
        tarball = base_rootfs_tar()
    with timed("docker import"):
        run(
            [
                "docker",
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--change",
                'CMD ["/bin/bash"]',
                str(tarball),
                BASE_IMAGE,
            ],
            env=env,
            timeout=600,
        )
    api_port, prometheus_port = free_port(), free_port()
    override = stack_override(tmp_path_factory.mktemp("stack"), api_port, prometheus_port)
    stack = Stack(compose, env, override)
    stack("down", "--volumes", "--remove-orphans", timeout=300, check=False)  # a stale run's
    try:
        with timed("build images"):
            stack("build", "api", "prometheus", timeout=1500)
        with timed("up --wait (healthy)"):
            done = stack("up", "-d", "--wait", "--wait-timeout", "300", timeout=400, check=False)
            if done.returncode != 0:
                pytest.fail(f"up failed:\n{done.stderr}\n{stack.logs()}", pytrace=False)
        yield stack, api_port, prometheus_port
    except BaseException:
        print(stack.logs())
        raise
    finally:
        with timed("down"):
            stack("down", "--volumes", "--remove-orphans", timeout=300, check=False)
        print("\nstack timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))


# -- the tests ---------------------------------------------------------------------------------


def png(size: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_api_runs_as_a_non_root_user_without_torch(stack) -> None:
    compose_stack, _, _ = stack
    uid = compose_stack("exec", "-T", "api", "id", "-u").stdout.strip()
    assert uid == "10001"
    find_torch = "import importlib.util as u; print(u.find_spec('torch'))"
    has_torch = compose_stack("exec", "-T", "api", "python", "-c", find_torch)
    assert has_torch.stdout.strip() == "None"


def test_api_is_healthy(stack) -> None:
    compose_stack, _, _ = stack
    listing = compose_stack("ps", "--format", "json").stdout
    rows = [json.loads(line) for line in listing.splitlines() if line.strip()]
    rows = rows[0] if rows and isinstance(rows[0], list) else rows
    health = {row["Service"]: row.get("Health") for row in rows}
    assert health == {"api": "healthy", "prometheus": "healthy"}


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
