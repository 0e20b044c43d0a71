"""available_cores(): the affinity mask capped by the cgroup CPU quota (v1 and v2), read from
cgroup filesystems laid out as the kernel lays them out (on the host and in a container)."""

from __future__ import annotations

from pathlib import Path

from app.cores import affinity_cores, available_cores, cgroup_cpu_limit


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_of_this_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(self_cgroup, "0::/system.slice/app.service\n")
    write(root / "system.slice/app.service/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, self_cgroup) is None
    write(root / "system.slice/cpu.max", "250000 100000\n")  # a parent's limit applies too
    assert cgroup_cpu_limit(root, self_cgroup) == 2.5
    write(root / "system.slice/app.service/cpu.max", "100000 100000\n")
    assert cgroup_cpu_limit(root, self_cgroup) == 1.0


def test_v2_in_a_container(tmp_path: Path) -> None:
    """`docker run --cpus=4`: the container's cgroup is mounted as the root, while
    /proc/self/cgroup may still name the host's path."""
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(self_cgroup, "0::/system.slice/docker-0123abcd.scope\n")
    write(root / "cpu.max", "400000 100000\n")
    assert cgroup_cpu_limit(root, self_cgroup) == 4.0
    assert available_cores(root, self_cgroup) == min(affinity_cores(), 4)


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(self_cgroup, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    write(root / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, self_cgroup) is None
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n")
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, self_cgroup) == 1.5
    assert available_cores(root, self_cgroup) == 1  # rounded down, at least 1


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert cgroup_cpu_limit(missing, missing) is None
    assert available_cores(missing, missing) == affinity_cores()


def test_a_tiny_quota_still_gives_one_core(tmp_path: Path) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(self_cgroup, "0::/\n")
    write(root / "cpu.max", "10000 100000\n")
    assert available_cores(root, self_cgroup) == 1
