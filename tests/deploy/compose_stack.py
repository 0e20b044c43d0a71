"""A compose project on the stack tests' engine: the CPU variant of docker-compose.yml (with
docker-compose.scale.yml for the scale test), on the test's own images and free loopback ports.

The images are built once per test session (`build_images`) and shared by every project.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from base_image import import_base_image
from deploy_tools import COMPOSE_FILE, CPU_FILE, ROOT, SCALE_FILE, Compose, timed
from docker_engine import Engine

SERVE_IMAGE = "vitserve-test/serve:latest"
PROMETHEUS_IMAGE = "vitserve-test/prometheus:latest"
LB_IMAGE = "vitserve-test/lb:latest"


def with_test_images(engine: Engine, base_image: str) -> Engine:
    """`engine` with the variables that make the compose files use the test's images."""
    return engine.with_env(
        VITSERVE_SERVE_BASE_IMAGE=base_image,
        VITSERVE_SERVE_IMAGE=SERVE_IMAGE,
        VITSERVE_PROMETHEUS_IMAGE=PROMETHEUS_IMAGE,
        VITSERVE_LB_BASE_IMAGE=base_image,
        VITSERVE_LB_IMAGE=LB_IMAGE,
    )


def write_build_override(directory: Path, base_image: str) -> Path:
    """Builds on the host's network (the engine's bridge has no route out); Prometheus from
    docker/Dockerfile.prometheus, as docs/deploy.md says for hosts without Docker Hub."""
    override = directory / "compose.build.yml"
    override.write_text(
        f"""\
services:
  api:
    build:
      network: host
  lb:
    build:
      network: host
  prometheus:
    build:
      context: {ROOT}
      dockerfile: docker/Dockerfile.prometheus
      network: host
      args:
        BASE_IMAGE: {base_image}
"""
    )
    return override


def build_images(compose: Compose, engine: Engine, directory: Path) -> Engine:
    """Imports the base, builds the API, Prometheus and LB images; returns `engine` with them."""
    with timed("debootstrap + docker import"):
        base_image = import_base_image(engine.env)
    built = with_test_images(engine, base_image)
    files = (COMPOSE_FILE, CPU_FILE, SCALE_FILE, write_build_override(directory, base_image))
    with timed("build images"):
        compose.run("build", "api", "prometheus", "lb", files=files, env=built.env, timeout=1500)
    return built


def write_test_override(
    directory: Path, published: dict[str, str], quick_checks: tuple[str, ...]
) -> Path:
    """An override that publishes each service of `published` on that port spec only (`!override`
    replaces the compose files' ports) and health-checks `quick_checks` every 5 s."""
    services = {name: "" for name in [*published, *quick_checks]}
    for name, port in published.items():
        services[name] += f'    ports: !override\n      - "{port}"\n'
    for name in quick_checks:
        services[name] += "    healthcheck:\n      interval: 5s\n"
    override = directory / "compose.test.yml"
    override.write_text(
        "services:\n" + "".join(f"  {name}:\n{body}" for name, body in services.items())
    )
    return override


class Stack:
    """`docker compose` for one project: its files, its environment."""

    def __init__(
        self, compose: Compose, engine: Engine, project: str, files: tuple[Path, ...]
    ) -> None:
        self.compose, self.files = compose, files
        self.engine = engine.with_env(COMPOSE_PROJECT_NAME=project)
        self.env = self.engine.env

    def __call__(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.compose.run(*args, files=self.files, env=self.env, timeout=timeout, check=check)

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=True,
        )

    def logs(self) -> str:
        done = self("logs", "--no-color", "--tail", "200", check=False, timeout=60)
        return done.stdout + done.stderr

    def containers(self, service: str) -> list[dict]:
        """`docker compose ps` rows of `service`'s running containers, by replica number."""
        listing = self("ps", "--format", "json", service).stdout
        rows = [json.loads(line) for line in listing.splitlines() if line.strip()]
        rows = rows[0] if rows and isinstance(rows[0], list) else rows
        return sorted(rows, key=lambda row: row["Name"])

    def health(self) -> dict[str, str | None]:
        """Health of each running container, by container name."""
        listing = self("ps", "--format", "json").stdout
        rows = [json.loads(line) for line in listing.splitlines() if line.strip()]
        rows = rows[0] if rows and isinstance(rows[0], list) else rows
        return {row["Name"]: row.get("Health") for row in rows}


@contextmanager
def running(stack: Stack, *up_args: str) -> Iterator[Stack]:
    """`up -d --wait` (all healthy) for the block; the logs on error. After it `down --volumes`,
    or on the tests' own engine (removed whole later) only `kill`, which frees the cores."""
    stack("down", "--volumes", "--remove-orphans", timeout=300, check=False)  # a stale run's
    try:
        with timed("up --wait (healthy)"):
            done = stack(
                "up", "-d", "--wait", "--wait-timeout", "300", *up_args, timeout=400, check=False
            )
            if done.returncode != 0:
                pytest.fail(f"up failed:\n{done.stderr}\n{stack.logs()}", pytrace=False)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        if stack.engine.disposable:
            with timed("kill"):
                stack("kill", timeout=120, check=False)
        else:
            with timed("down"):
                stack("down", "--volumes", "--remove-orphans", timeout=300, check=False)
