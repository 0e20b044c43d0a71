"""How many CPU cores this process may use: its affinity mask, capped by its cgroup's CPU quota.

A container started with `--cpus=4` on a 64-core host sees 64 cores in its affinity mask but
is throttled to 4 cores' worth of time; sizing thread pools to 64 would only add contention.
Serving (thread counts) and training (export sessions, data workers) both ask here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def affinity_cores() -> int:
    """Cores in this process's affinity mask (the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """Cores' worth of CPU time the cgroup quota allows (quota / period), or None without one.

    cgroup v2 `cpu.max` and v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, in this process's
    cgroup and every ancestor (a limit anywhere above applies too); the smallest wins. Inside a
    container the cgroup filesystem's root is often the container's own cgroup while
    /proc/self/cgroup names the host's path, so the root itself is always read as well.
    """
    limits = [
        limit
        for directory in _cgroup_directories(root, self_cgroup)
        if (limit := _quota_in(directory)) is not None
    ]
    return min(limits) if limits else None


def available_cores(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """The cores to size thread pools to: the affinity mask, capped by the cgroup quota
    rounded down (1.5 cores' quota gives 1 thread, as Go's automaxprocs does), at least 1."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit(root, self_cgroup)
    if limit is not None:
        cores = min(cores, math.floor(limit))
    return max(1, cores)


def _cgroup_directories(root: Path, self_cgroup: Path) -> list[Path]:
    """The directories that may hold this process's CPU quota, deepest first."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    mounts: list[tuple[Path, str]] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # v2: one unified hierarchy
            mounts.append((root, path))
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            for name in (controllers, "cpu", "cpu,cpuacct"):
                mounts.append((root / name, path))
    if not mounts:
        mounts = [(root, "/"), (root / "cpu", "/")]
    directories: list[Path] = []
    for mount, path in mounts:
        directory = mount / path.lstrip("/")
        while True:
            if directory not in directories:
                directories.append(directory)
            if directory == mount:
                break
            directory = directory.parent
    return directories


def _quota_in(directory: Path) -> float | None:
    """The quota in one cgroup directory, in cores, or None where it sets none."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        if quota == "max":
            return None
        if int(quota) > 0 and int(period) > 0:
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((directory / "cpu.cfs_quota_us").read_text())
        period_us = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
