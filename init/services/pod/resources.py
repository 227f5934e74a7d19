"""A container's resources: checked, then written as the OCI spec's `linux.resources`.

Kubernetes' meanings: a memory limit is memory.max (no swap beyond it); a CPU limit in
millicores is a quota per 100 ms period (250m: 25 ms of every 100 ms); a CPU request is a share
against the other containers (cpu.shares = millicores x 1024 / 1000, as the kubelet computes
it; the runtime turns shares into cgroup2's cpu.weight). A pids limit bounds processes and
threads; without one a container gets DEFAULT_PIDS_SHARE of what the pods may hold in all.
"""

from __future__ import annotations

from typing import Any

from init.services.pod.errors import InvalidPod
from init.services.pod.model import Resources

MIN_MEMORY = 6 << 20  # below this no runtime starts a container (runc refuses < 6 MiB)
MAX_MEMORY = 1 << 50
CPU_PERIOD_US = 100_000
MIN_CPU_MILLIS = 10  # cgroup2's smallest quota is 1 ms per period
MAX_CPU_MILLIS = 1_000_000
MAX_PIDS = 1 << 22  # the kernel's PID_MAX_LIMIT
DEFAULT_PIDS_SHARE = 4  # a container without a limit: a quarter of the pods' pids.max
DEFAULT_PIDS = 4096  # ... or this where the pods' bound is not known (local mode)


def check(r: Resources, what: str) -> Resources:
    """INVALID_ARGUMENT for a value no container could run with, before anything is made."""
    if r.memory_limit_bytes and not MIN_MEMORY <= r.memory_limit_bytes <= MAX_MEMORY:
        raise InvalidPod(f"{what}: memory limit {r.memory_limit_bytes} bytes is out of range "
                         f"({MIN_MEMORY >> 20} MiB to {MAX_MEMORY >> 40} TiB)")
    for name, value in (("CPU limit", r.cpu_limit_millis), ("CPU request", r.cpu_request_millis)):
        if value and not MIN_CPU_MILLIS <= value <= MAX_CPU_MILLIS:
            raise InvalidPod(f"{what}: {name} {value}m is out of range ({MIN_CPU_MILLIS}m to "
                             f"{MAX_CPU_MILLIS}m)")
    if r.pids_limit and not 1 <= r.pids_limit <= MAX_PIDS:
        raise InvalidPod(f"{what}: pids limit {r.pids_limit} is out of range")
    return r


def default_pids(pods_pids_max: int | None) -> int:
    if pods_pids_max is None:
        return DEFAULT_PIDS
    return max(pods_pids_max // DEFAULT_PIDS_SHARE, 16)


def linux_resources(r: Resources, *, default_pids_limit: int) -> dict[str, Any]:
    """config.json's `linux.resources` (devices aside)."""
    out: dict[str, Any] = {"pids": {"limit": r.pids_limit or default_pids_limit}}
    if r.memory_limit_bytes:
        out["memory"] = {"limit": r.memory_limit_bytes, "swap": r.memory_limit_bytes}
    cpu: dict[str, int] = {}
    if r.cpu_limit_millis:
        cpu["quota"] = r.cpu_limit_millis * CPU_PERIOD_US // 1000
        cpu["period"] = CPU_PERIOD_US
    if r.cpu_request_millis:
        cpu["shares"] = max(r.cpu_request_millis * 1024 // 1000, 2)
    if cpu:
        out["cpu"] = cpu
    return out


def update_document(r: Resources, *, default_pids_limit: int) -> dict[str, Any]:
    """What `runtime update --resources FILE` takes: the whole set, unset values back to none
    (memory max, no quota, the default weight)."""
    doc = linux_resources(r, default_pids_limit=default_pids_limit)
    doc.setdefault("memory", {"limit": -1, "swap": -1})
    cpu = doc.setdefault("cpu", {})
    cpu.setdefault("quota", -1)
    cpu.setdefault("period", CPU_PERIOD_US)
    cpu.setdefault("shares", 1024)
    return doc
