"""What of this machine a process may use: its cores, as `--gateways auto` counts them.

A container's CPU limit is a cgroup quota (`cpu.max` in cgroup v2, `cpu.cfs_quota_us` over
`cpu.cfs_period_us` in v1), not a smaller set of cores: a pod limited to 2 CPUs on a 64-core
node still sees 64 cores in its affinity mask. Counting those would start 63 gateways, each
with a copy of the ledger, on 2 CPUs' worth of time. So the cores counted are the affinity
mask's, capped by the quota of the process's cgroup and of each cgroup above it, rounded up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """The cores this process may run on (its affinity), at most its CPU quota rounded up."""
    return _capped(_affinity(), cpu_quota(cgroup_root, proc_cgroup))


def _capped(cores: int, quota: float | None) -> int:
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def describe_cores() -> str:
    """How usable_cores counted, for the start-up log: "4 cores (of 64, by the CPU quota
    3.5)", or "2 cores"."""
    cores, quota = _affinity(), cpu_quota()
    usable = _capped(cores, quota)
    if usable == cores:
        return f"{usable} core{'' if usable == 1 else 's'}"
    return f"{usable} core{'' if usable == 1 else 's'} (of {cores}, by the CPU quota {quota:g})"


def cpu_quota(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """The CPUs' worth of time this process's cgroups allow (the smallest quota on the way
    up to the root), or None when none is set or it cannot be read (not Linux). The paths
    default to the machine's (CGROUP_ROOT, PROC_SELF_CGROUP)."""
    cgroup_root = CGROUP_ROOT if cgroup_root is None else cgroup_root
    proc_cgroup = PROC_SELF_CGROUP if proc_cgroup is None else proc_cgroup
    try:
        memberships = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for membership in memberships:
        fields = membership.split(":", 2)  # hierarchy-ID:controllers:path
        if len(fields) != 3:
            continue  # not a line this reads: no quota from it
        _, controllers, path = fields
        if not controllers:  # cgroup v2: one hierarchy, every controller
            quotas += _v2_quotas(cgroup_root, path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quotas(cgroup_root, controllers, path)
    return min(quotas, default=None)


def _v2_quotas(cgroup_root: Path, path: str) -> list[float]:
    quotas = []
    for directory in _up_from(cgroup_root, path):
        quota, _, period = (_read(directory / "cpu.max") or "").partition(" ")
        cpus = _cpus(quota, period)  # "max 100000": no quota here
        if cpus is not None:
            quotas.append(cpus)
    return quotas


def _v1_quotas(cgroup_root: Path, controllers: str, path: str) -> list[float]:
    # The hierarchy is mounted under its controllers' names (cpu,cpuacct), often also as cpu.
    mounts = [cgroup_root / controllers, cgroup_root / "cpu"]
    mount = next((candidate for candidate in mounts if candidate.is_dir()), None)
    if mount is None:
        return []
    quotas = []
    for directory in _up_from(mount, path):
        cpus = _cpus(_read(directory / "cpu.cfs_quota_us") or "",  # -1: no quota here
                     _read(directory / "cpu.cfs_period_us") or "")
        if cpus is not None:
            quotas.append(cpus)
    return quotas


def _up_from(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and its ancestors', those this process can see. Inside a
    container the hierarchy's root is often the container's own cgroup, and the path given
    (the host's) does not exist under it: then only the root counts."""
    parts = [part for part in path.split("/") if part]
    directories = (mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1))
    return [directory for directory in directories if directory.is_dir()]


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpus(quota: str, period: str) -> float | None:
    """quota / period, when both are positive whole numbers (else no quota)."""
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None
