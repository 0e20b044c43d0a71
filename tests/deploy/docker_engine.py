"""The stack tests' Docker engine: a private dockerd (as root) with its default bridge, or the
engine that VITSERVE_TEST_DOCKER_HOST names.

The private engine runs `dockerd --iptables=false --ip-masq=false --storage-driver=vfs` with its
data root, exec root and socket in a new directory under /tmp, and is stopped and removed
afterwards. Without iptables its bridge still gives compose what the stacks need: user-defined
networks, the embedded DNS (one A record per replica of a scaled service) and ports published
on 127.0.0.1 through docker-proxy. Containers have no route out (no masquerading), so image
builds use the host's network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from deploy_tools import run_checked, timed, wait_for

MIN_FREE_BYTES = 15 * 2**30  # vfs keeps a full copy of the filesystem per layer


@dataclass(frozen=True)
class Engine:
    """How to reach a Docker engine: the environment for docker and docker compose."""

    env: dict[str, str]
    # The tests' own engine, removed whole afterwards: its containers need no `down` (with vfs,
    # removing a container deletes a full copy of its image: minutes on a slow disk).
    disposable: bool

    def with_env(self, **variables: str) -> Engine:
        return replace(self, env={**self.env, **variables})


def _answers(daemon: subprocess.Popen[bytes], env: dict[str, str]) -> bool:
    if daemon.poll() is not None:
        raise OSError(f"dockerd exited with {daemon.returncode}")
    return subprocess.run(["docker", "version"], env=env, capture_output=True).returncode == 0


def _require_private_engine() -> None:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is missing: apt-get install docker.io", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("starting dockerd needs root (or set VITSERVE_TEST_DOCKER_HOST)", pytrace=False)
    if shutil.disk_usage("/tmp").free < MIN_FREE_BYTES:
        pytest.fail(f"/tmp needs {MIN_FREE_BYTES / 2**30:.0f} GiB free for vfs", pytrace=False)


def _remove_engine_home(home: Path) -> None:
    # dockerd leaves its network namespaces mounted under its exec root.
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


@contextmanager
def docker_engine(base_env: dict[str, str]) -> Iterator[Engine]:
    """A running engine for the `with` block; its env is `base_env` plus DOCKER_HOST."""
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing: apt-get install docker.io", pytrace=False)
    env = dict(base_env)
    if host := os.environ.get("VITSERVE_TEST_DOCKER_HOST"):
        env["DOCKER_HOST"] = host
        run_checked(["docker", "version"], env=env, timeout=30)
        yield Engine(env, disposable=False)
        return

    _require_private_engine()
    home = Path(tempfile.mkdtemp(prefix="vitserve-dockerd-", dir="/tmp"))
    socket_path = home / "docker.sock"
    log_path = home / "dockerd.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip-masq=false",
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
            try:
                wait_for("dockerd to answer", lambda: _answers(daemon, env), timeout=90)
            except BaseException:
                print(log_path.read_text()[-4000:])
                raise
        yield Engine(env, disposable=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        _remove_engine_home(home)
