"""`--gateways auto` counts the cores a process may use: its affinity, capped by the CPU
quota of its cgroups (a container's CPU limit), read here from fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atp import machine

AFFINITY = len(os.sched_getaffinity(0))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _proc(tmp_path: Path, text: str) -> Path:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(text)
    return proc


def test_a_v2_quota_caps_the_cores_rounded_up(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")  # 1.5 CPUs
    proc = _proc(tmp_path, "0::/kubepods/pod1\n")
    assert machine.cpu_quota(root, proc) == 1.5
    assert machine.usable_cores(root, proc) == min(AFFINITY, 2)


def test_the_smallest_quota_on_the_way_up_counts(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "parent" / "cpu.max", "100000 100000\n")  # 1 CPU for the whole subtree
    _write(root / "parent" / "child" / "cpu.max", "400000 100000\n")
    proc = _proc(tmp_path, "0::/parent/child\n")
    assert machine.cpu_quota(root, proc) == 1.0
    assert machine.usable_cores(root, proc) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    proc = _proc(tmp_path, "0::/\n")
    assert machine.cpu_quota(root, proc) is None
    assert machine.usable_cores(root, proc) == AFFINITY


def test_a_v1_quota_is_read_from_the_cpu_hierarchy(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    group = root / "cpu,cpuacct" / "docker" / "abc"
    _write(group / "cpu.cfs_quota_us", "50000\n")  # half a CPU
    _write(group / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")  # the root: no quota
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    proc = _proc(tmp_path, "5:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    assert machine.cpu_quota(root, proc) == 0.5
    assert machine.usable_cores(root, proc) == 1  # never fewer than one


def test_inside_a_container_the_hosts_path_is_not_there_and_the_root_counts(
    tmp_path: Path,
) -> None:
    # Without a cgroup namespace /proc/self/cgroup names the host's path, while the
    # container's own cgroup is mounted as the root.
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "300000 100000\n")
    proc = _proc(tmp_path, "0::/system.slice/docker-abc.scope\n")
    assert machine.cpu_quota(root, proc) == 3.0


@pytest.mark.parametrize("cpu_max", ["", "garbage 100000", "100000 0", "-5 100000"])
def test_unreadable_or_odd_quotas_count_as_none(tmp_path: Path, cpu_max: str) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", cpu_max)
    proc = _proc(tmp_path, "0::/\n")
    assert machine.cpu_quota(root, proc) is None


def test_lines_it_cannot_read_are_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "200000 100000\n")
    proc = _proc(tmp_path, "garbage\n\n0::/\n")
    assert machine.cpu_quota(root, proc) == 2.0


def test_without_cgroups_there_is_no_quota(tmp_path: Path) -> None:
    assert machine.cpu_quota(tmp_path / "none", tmp_path / "no-proc-file") is None
    assert machine.usable_cores(tmp_path / "none", tmp_path / "no-proc-file") == AFFINITY
