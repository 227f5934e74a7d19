"""What a container uses now, read from its cgroup and its files (blocking: run in a thread)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from init.services.pod.model import Container
from init.system import cgroups


@dataclass(frozen=True)
class Usage:
    container_id: str
    cpu_usage_usec: int = 0
    memory_current_bytes: int = 0
    memory_peak_bytes: int = 0
    pids_current: int = 0
    writable_layer_bytes: int = 0
    log_bytes: int = 0


def _number(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def tree_bytes(top: Path) -> int:
    """Bytes allocated under `top` (as du), never following links or leaving its filesystem."""
    total = 0
    try:
        dev = top.lstat().st_dev
    except OSError:
        return 0
    stack = [str(top)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False) and st.st_dev == dev:
                    stack.append(entry.path)
    return total


def of(c: Container) -> Usage:
    group = c.cgroup
    logs = sum(p.stat().st_size for p in c.dir.glob("std*.log*") if p.is_file())
    if group is None or not group.is_dir():
        return Usage(c.id, log_bytes=logs,
                     writable_layer_bytes=tree_bytes((c.layer or c.dir) / "upper"))
    return Usage(c.id, cpu_usage_usec=cgroups.keyed(group, "cpu.stat", "usage_usec"),
                 memory_current_bytes=_number(group / "memory.current"),
                 memory_peak_bytes=_number(group / "memory.peak"),
                 pids_current=_number(group / "pids.current"),
                 writable_layer_bytes=tree_bytes((c.layer or c.dir) / "upper"),
                 log_bytes=logs)


@dataclass(frozen=True)
class VmUsage:
    memory_total_bytes: int
    memory_available_bytes: int
    cpu_usage_usec: int
    cpus: int
    data_used_bytes: int
    data_free_bytes: int


def vm(data_dir: Path) -> VmUsage:
    from init.system import meminfo

    busy = 0
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait, in ticks
        busy = sum(fields[:8]) - fields[3] - fields[4]
    except (OSError, ValueError, IndexError):
        pass
    ticks = os.sysconf("SC_CLK_TCK") or 100
    try:
        st = os.statvfs(data_dir)
        used, free = (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize
    except OSError:
        used = free = 0
    return VmUsage((meminfo.total_kib() or 0) * 1024, (meminfo.available_kib() or 0) * 1024,
                   busy * 1_000_000 // ticks, os.cpu_count() or 1, used, free)
