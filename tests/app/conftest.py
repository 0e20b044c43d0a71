"""Fixtures for the service: real `python -m app` processes on free loopback ports, serving
the tiny model the tests export (`tiny_model_dir`), driven with httpx; and real Prometheus
processes scraping them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from app_processes import (
    Prometheus,
    Server,
    StartPrometheus,
    StartServer,
    binary,
    make_repository,
)


@pytest.fixture(scope="module")
def start_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """Start servers with settings overrides (VITSERVE_ names, lower case, without prefix;
    `model_dir=` serves another model) and interpreter flags (`python_flags=("-O",)`); every one
    is stopped at the end of the module."""
    servers: list[Server] = []

    def start(
        wait: str | None = "/readyz",
        python_flags: tuple[str, ...] = (),
        model_dir: Path = tiny_model_dir,
        **settings: object,
    ) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = Server(model_dir, log, python_flags, **settings)
        servers.append(server)
        if wait:
            server.wait(wait)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server: default batching, a 2 MB upload limit."""
    server = Server(
        tiny_model_dir,
        tmp_path_factory.mktemp("server") / "server.log",
        max_upload_bytes=2_000_000,
    )
    server.wait()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def start_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartPrometheus]:
    """Start Prometheus processes: `start_prometheus([server.port], rule_files=(...))`; every
    one is stopped at the end of the module."""
    started: list[Prometheus] = []

    def start(targets: list[int], rule_files: tuple[Path, ...] = ()) -> Prometheus:
        workdir = tmp_path_factory.mktemp("prometheus")
        started.append(Prometheus(workdir, targets, rule_files))
        return started[-1]

    yield start
    for prometheus in started:
        prometheus.stop()


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of `promtool` (Debian's prometheus package)."""
    return binary("promtool")


@pytest.fixture(scope="session")
def model_repository(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, other_model_dir: Path
) -> Path:
    """Two models: vit-tiny-test (version 1) and vit-other (version 1); read-only."""
    return make_repository(
        tmp_path_factory.mktemp("repository"),
        {"vit-tiny-test": {1: tiny_model_dir}, "vit-other": {1: other_model_dir}},
    )
