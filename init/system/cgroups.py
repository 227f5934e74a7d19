"""cgroup2: the tree the init owns, and what a container's cgroup says about it.

    /sys/fs/cgroup/                 the VM (PID 1 mode); every controller handed down
      init/                         the init and its helpers (crun, mke2fs): memory.min, cpu.weight
      pods/                         every pod: memory.max = total - reserve,
        POD/                                   pids.max = threads-max - reserve
          CONTAINER/                each container (its runtime's cgroupsPath)

The init always keeps room: a container that allocates without end meets the pods' memory.max
(the OOM killer then picks inside pods/, never the init), and a fork bomb meets pids.max while
the kernel still has threads for the init and crun. In local mode the runtime places containers
itself (in the cgroup the init was started in) and the tree is not made.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("mvirt-one")

ROOT = Path("/sys/fs/cgroup")
INIT = "init"
PODS = "pods"
INIT_CPU_WEIGHT = 1000  # ten times a pod's default (100): the init answers under load
THREADS_MAX = Path("/proc/sys/kernel/threads-max")


def enable_controllers(root: Path = ROOT) -> list[str]:
    """Write +ctrl for each controller into the root's subtree_control; returns those enabled."""
    try:
        available = (root / "cgroup.controllers").read_text().split()
    except OSError as e:
        LOG.warning("cgroup2 not available at %s: %s", root, e)
        return []
    enabled = []
    for controller in available:
        try:
            (root / "cgroup.subtree_control").write_text(f"+{controller}")
            enabled.append(controller)
        except OSError as e:
            LOG.warning("cannot enable cgroup controller %s: %s", controller, e)
    return enabled


@dataclass(frozen=True)
class Tree:
    pods: Path  # the pods' cgroup directory
    memory_max: int | None  # what pods/ may use in all (bytes)
    pids_max: int | None


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError as e:
        LOG.warning("cgroup %s = %s: %s", path, value, e)
        return False


def setup(memory_total: int, memory_reserve: int, pids_reserve: int, root: Path = ROOT,
          threads_max: Path = THREADS_MAX) -> Tree | None:
    """Make init/ and pods/ (PID 1 mode), move this process into init/; None if cgroup2 is not
    there (the containers then run without the pods' bounds, which the log says)."""
    controllers = enable_controllers(root)
    if not controllers:
        return None
    init, pods = root / INIT, root / PODS
    try:
        init.mkdir(exist_ok=True)
        pods.mkdir(exist_ok=True)
        (init / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as e:
        LOG.error("cgroup tree: %s; containers run without the pods' bounds", e)
        return None
    for controller in controllers:
        _write(pods / "cgroup.subtree_control", f"+{controller}")
    memory_max = max(memory_total - memory_reserve, 0) if "memory" in controllers else None
    if memory_max is not None:
        _write(pods / "memory.max", str(memory_max))
        _write(init / "memory.min", str(min(memory_reserve, memory_total)))
    pids_max = None
    if "pids" in controllers:
        try:
            pids_max = max(int(threads_max.read_text()) - pids_reserve, 1)
            _write(pods / "pids.max", str(pids_max))
        except (OSError, ValueError) as e:
            LOG.warning("threads-max: %s", e)
    if "cpu" in controllers:
        _write(init / "cpu.weight", str(INIT_CPU_WEIGHT))
    return Tree(pods, memory_max, pids_max)


def container_path(tree: Tree, pod_id: str, container_id: str) -> str:
    """The runtime's cgroupsPath for a container: below pods/, relative to the cgroup root."""
    return "/" + "/".join((tree.pods.name, pod_id, container_id))


def unified_root(mountinfo: str = "/proc/self/mountinfo") -> Path:
    """Where cgroup2 is mounted: /sys/fs/cgroup in the VM, /sys/fs/cgroup/unified on a host
    with the hybrid layout."""
    try:
        with open(mountinfo) as f:
            for line in f:
                before, _, after = line.partition(" - ")
                if after.split(" ", 1)[0] == "cgroup2":
                    return Path(before.split()[4])
    except OSError:
        pass
    return ROOT


def path_of(pid: int, root: Path | None = None) -> Path | None:
    """The cgroup2 directory a process is in (its "0::" line), or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return (root or unified_root()) / line[3:].strip().lstrip("/")
    except OSError:
        return None
    return None


def keyed(group: Path, name: str, key: str) -> int:
    """A value of a flat keyed cgroup file ("key value" lines: memory.events, cpu.stat); 0 if
    the file or the key is not there."""
    try:
        for line in (group / name).read_text().splitlines():
            k, _, value = line.partition(" ")
            if k == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def oom_kills(group: Path) -> int:
    """How many processes the OOM killer took in this cgroup and below (memory.events)."""
    return keyed(group, "memory.events", "oom_kill")
