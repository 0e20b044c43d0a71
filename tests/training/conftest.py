"""Training tests share 2 busy CPU cores: one torch thread each avoids oversubscription (which
makes small models ten times slower), and runs started as processes get the same."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment of a `python -m training.run` child: this repo, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return env


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> RunCli:
    """`run_cli("pretrain", "--help")`: the finished process, output captured."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "training.run", *args],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
