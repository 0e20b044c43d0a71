"""Real service and Prometheus processes for the tests in this folder, importable by name
(`from app_processes import ...`); conftest.py turns them into fixtures."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def binary(name: str) -> str:
    """A binary of Debian's prometheus package; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y prometheus", pytrace=False)
    return path


class Prometheus:
    """A real Prometheus (Debian's package, which .ci/run installs) scraping the given ports on
    127.0.0.1 every second as job `vitserve`, evaluating `rule_files` every second; its HTTP API
    at hand. A missing binary fails the test: no skip."""

    def __init__(self, workdir: Path, targets: list[int], rule_files: tuple[Path, ...] = ()):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        rules = "".join(f"  - {path}\n" for path in rule_files)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n"
            "  - job_name: vitserve\n"
            f"    static_configs:\n      - targets: {[f'127.0.0.1:{port}' for port in targets]}\n"
        )
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=self._log,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful /api/v1 answer; fails the test with the error otherwise."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The series an instant query returns now."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The series of `expr` once it returns any (Prometheus starting up, scrapes pending)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no series for {expr}\n{self.log()}"
            try:
                result = self.query(expr)
            except (httpx.TransportError, json.JSONDecodeError):  # still starting up
                result = []
            if result:
                return result
            time.sleep(0.5)


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
StartPrometheus = Callable[..., Prometheus]


def make_repository(root: Path, models: dict[str, dict[int, Path]]) -> Path:
    """A model repository at `root`: `root/<name>/<version>/` copied from model directories."""
    for name, versions in models.items():
        for version, source in versions.items():
            shutil.copytree(source, root / name / str(version))
    return root
