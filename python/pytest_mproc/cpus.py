"""How many CPUs this process may really use: affinity mask and cgroup CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota) limit, or None if unlimited."""
    try:
        rel = ""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[0] == "0":
                rel = parts[2].lstrip("/")
        cpu_max = Path("/sys/fs/cgroup") / rel / "cpu.max"
        if not cpu_max.exists():
            cpu_max = Path("/sys/fs/cgroup/cpu.max")
        if cpu_max.exists():
            quota, period = cpu_max.read_text().split()[:2]
            if quota != "max":
                return int(quota) / int(period)
            return None
        q = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        p = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.exists() and p.exists() and int(q.read_text()) > 0:
            return int(q.read_text()) / int(p.read_text())
    except (OSError, ValueError):
        pass
    return None


def available_cpus() -> int:
    """CPUs usable by this process, at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)
