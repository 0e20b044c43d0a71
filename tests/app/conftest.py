"""Fixtures for the service: real `python -m app` processes on free loopback ports, serving
the tiny model the tests export (`tiny_model_dir`), driven with httpx."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `python [flags] -m app` process; `stop()` sends SIGTERM and waits for its exit code."""

    def __init__(
        self,
        model_dir: Path,
        log_path: Path,
        python_flags: tuple[str, ...] = (),
        **settings: object,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITSERVE_")}
        env.update(
            VITSERVE_MODEL_DIR=str(model_dir),
            VITSERVE_HOST="127.0.0.1",
            VITSERVE_PORT=str(self.port),
            VITSERVE_GRPC_PORT="0",
            VITSERVE_PROVIDERS="cpu",
            VITSERVE_INTRA_OP_THREADS="1",
            VITSERVE_PREPROCESS_THREADS="2",
            VITSERVE_LOG_LEVEL="warning",
        )
        env.update({f"VITSERVE_{k.upper()}": str(v) for k, v in settings.items()})
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "app"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, path: str = "/readyz", timeout: float = 60) -> None:
        """Until `path` answers 200; fails with the server's log if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.client.get(path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not answering {path} after {timeout} s:\n{self.log()}")

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of the samples of `name` whose labels include `labels`, e.g.
        metric("vitserve_batch_size_count") or metric("vitserve_requests_total",
        'route="/classify",status="200"'); KeyError if there is none."""
        return metric_sum(self.client.get("/metrics").text, name, labels)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.client.close()
        self._log.close()
        return code


def metric_sum(text: str, name: str, labels: str = "") -> float:
    """Sum the samples of `name` in Prometheus text whose labels include `labels`."""
    wanted = set(re.findall(r'\w+="[^"]*"', labels))
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        if wanted <= set(re.findall(r'\w+="[^"]*"', match.group(2) or "")):
            total, found = total + float(match.group(3)), True
    if not found:
        raise KeyError(f"{name}{{{labels}}}")
    return total


StartServer = Callable[..., Server]


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


def make_repository(root: Path, models: dict[str, dict[int, Path]]) -> Path:
    """A model repository at `root`: `root/<name>/<version>/` copied from model directories."""
    for name, versions in models.items():
        for version, source in versions.items():
            shutil.copytree(source, root / name / str(version))
    return root


@pytest.fixture(scope="session")
def model_repository(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, other_model_dir: Path
) -> Path:
    """Two models: vit-tiny-test (version 1) and vit-other (version 1); read-only."""
    return make_repository(
        tmp_path_factory.mktemp("repository"),
        {"vit-tiny-test": {1: tiny_model_dir}, "vit-other": {1: other_model_dir}},
    )
