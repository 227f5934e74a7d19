"""The filesystems PID 1 mounts, and unmounting them again at power-off."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from init.system import libc

LOG = logging.getLogger("mvirt-one")

_NOSUID_NODEV_NOEXEC = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    fstype: str
    flags: int = 0
    data: str = ""
    mode: int = 0o755


# Order matters: /dev before /dev/pts and /dev/shm, /sys before its cgroup mount.
SYSTEM_MOUNTS: tuple[Mount, ...] = (
    Mount("proc", "/proc", "proc", _NOSUID_NODEV_NOEXEC),
    Mount("sysfs", "/sys", "sysfs", _NOSUID_NODEV_NOEXEC),
    Mount("devtmpfs", "/dev", "devtmpfs", libc.MS_NOSUID, "mode=0755"),
    # newinstance+ptmxmode: containers get their own devpts; ours serves exec's ttys.
    Mount("devpts", "/dev/pts", "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    Mount("tmpfs", "/dev/shm", "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=1777", 0o1777),
    Mount("tmpfs", "/run", "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0755"),
    Mount("tmpfs", "/tmp", "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=1777", 0o1777),
    Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", _NOSUID_NODEV_NOEXEC | libc.MS_RELATIME,
          "nsdelegate"),
)


def mounted_targets() -> list[str]:
    """Mount points in mount order, read from /proc/self/mounts (empty before /proc is up)."""
    try:
        with open("/proc/self/mounts") as f:
            return [line.split()[1] for line in f]
    except OSError:
        return []


def mount_all(mounts: tuple[Mount, ...] = SYSTEM_MOUNTS) -> list[str]:
    """Mount each filesystem not yet mounted; a failure is logged and the rest still mount."""
    done: list[str] = []
    for m in mounts:
        if m.target in mounted_targets():
            continue
        try:
            os.makedirs(m.target, mode=m.mode, exist_ok=True)
            libc.mount(m.source, m.target, m.fstype, m.flags, m.data)
            done.append(m.target)
        except OSError as e:
            LOG.error("cannot mount %s on %s: %s", m.fstype, m.target, e)
    # /dev/ptmx must point into our devpts instance (devtmpfs' own node uses the initial one).
    if "/dev/pts" in done:
        try:
            if os.path.lexists("/dev/ptmx"):
                os.unlink("/dev/ptmx")
            os.symlink("pts/ptmx", "/dev/ptmx")
        except OSError as e:
            LOG.warning("cannot point /dev/ptmx at devpts: %s", e)
    return done


def unmount_all() -> None:
    """Unmount everything but the root, deepest first; busy ones are detached lazily."""
    targets = [t for t in mounted_targets() if t != "/"]
    for target in reversed(targets):
        try:
            libc.umount(target)
        except OSError:
            try:
                libc.umount(target, libc.MNT_DETACH)
            except OSError as e:
                LOG.debug("cannot unmount %s: %s", target, e)


def fs_type(path: Path, mounts: str = "/proc/self/mounts") -> str:
    """The type of the filesystem `path` is on (the longest mount point that contains it)."""
    best, kind = "", ""
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    for line in lines:
        words = line.split()
        if len(words) < 3:
            continue
        point = words[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, words[2]
    return kind
