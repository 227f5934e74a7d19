"""The OCI runtime spec (config.json) of one container.

Docker's rules over the image config: `command` replaces Entrypoint, `args` replaces Cmd (and a
`command` alone drops the image's Cmd), env merged with the spec winning, working_dir overrides,
the image's User resolved against the image's /etc/passwd and /etc/group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from init.services.pod import imagefiles, seccomp
from init.services.pod.errors import InvalidPod
from init.services.pod.resources import DEFAULT_PIDS

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set less two: enough for ordinary services, nothing that
# administers the VM. Not CAP_MKNOD (a device node of the data disk is every pod's data) and not
# CAP_NET_RAW (containers share the VM's network namespace: raw packets are forged router
# advertisements and DHCP replies the init would believe; Docker dropped it for this reason).
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# Docker's default device rules: nothing but the harmless character devices, whatever nodes a
# container finds or makes (major, minor; None is any minor).
_DEVICES_ALLOWED = (
    (1, 3),  # null
    (1, 5),  # zero
    (1, 7),  # full
    (1, 8),  # random
    (1, 9),  # urandom
    (5, 0),  # tty
    (5, 1),  # console
    (5, 2),  # ptmx
    (136, None),  # the container's own pts
)
DEVICES: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": major, "access": "rwm",
     **({"minor": minor} if minor is not None else {})}
    for major, minor in _DEVICES_ALLOWED]

MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass(frozen=True)
class Process:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int


def merge_env(image_env: Sequence[str], spec_env: Sequence[str]) -> list[str]:
    merged: dict[str, str] = {}
    for item in [DEFAULT_PATH, *image_env, *spec_env]:
        key, sep, _ = item.partition("=")
        if not key or not sep:
            if item in spec_env:
                raise InvalidPod(f"environment entry {item!r} is not KEY=VALUE")
            continue
        merged[key] = item
    return list(merged.values())


def _entries(rootfs: Path, path: str) -> list[list[str]]:
    text = imagefiles.read_text(rootfs, path)
    return [line.split(":") for line in (text or "").splitlines()]


def _lookup(entries: list[list[str]], name: str, field_index: int) -> int | None:
    for fields in entries:
        if len(fields) > field_index and fields[0] == name:
            try:
                return int(fields[field_index])
            except ValueError:
                return None
    return None


def resolve_user(user: str, rootfs: Path) -> tuple[int, int]:
    """`uid`, `name`, `uid:gid`, `name:group` → (uid, gid); names from the image's files, read
    as the container sees them (blocking: call it off the event loop)."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    passwd = _entries(rootfs, "/etc/passwd")
    if name.isdigit():
        uid = int(name)
        gid = next((int(f[3]) for f in passwd
                    if len(f) > 3 and f[2] == name and f[3].isdigit()), 0)
    else:
        found = _lookup(passwd, name, 2)
        if found is None:
            raise InvalidPod(f"user {name!r} of the image is not in its /etc/passwd")
        uid = found
        gid = _lookup(passwd, name, 3) or 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found_gid = _lookup(_entries(rootfs, "/etc/group"), group, 2)
            if found_gid is None:
                raise InvalidPod(f"group {group!r} of the image is not in its /etc/group")
            gid = found_gid
    return uid, gid


def process(*, entrypoint: Sequence[str], cmd: Sequence[str], image_env: Sequence[str],
            image_workdir: str, image_user: str, command: Sequence[str], args: Sequence[str],
            env: Sequence[str], working_dir: str, rootfs: Path) -> Process:
    argv = [*(command or entrypoint), *(args or ([] if command else cmd))]
    if not argv:
        raise InvalidPod("no command: the image has no Entrypoint or Cmd and the spec gives none")
    cwd = working_dir or image_workdir or "/"
    if not cwd.startswith("/"):
        raise InvalidPod(f"working_dir {cwd!r} is not an absolute path")
    uid, gid = resolve_user(image_user, rootfs)
    return Process(argv, merge_env(image_env, env), cwd, uid, gid)


def config(proc: Process, *, rootfs: Path, hostname: str, etc_files: dict[str, Path],
           resources: dict[str, Any] | None = None,
           cgroups_path: str | None = None) -> dict[str, Any]:
    """config.json: fresh pid/mount/ipc/uts/cgroup namespaces; the network namespace is the VM's
    own, shared by every container of the pod. `resources`: linux.resources (resources.py);
    `cgroups_path`: where the runtime puts the container (cgroups.py), else its own choice."""
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                              "cgroup")]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    for dest, src in sorted(etc_files.items()):
        mounts.append({"destination": dest, "type": "bind", "source": str(src),
                       "options": ["rbind", "ro"]})
    caps = list(CAPABILITIES)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": proc.uid, "gid": proc.gid},
            "args": proc.args,
            "env": proc.env,
            "cwd": proc.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
            # Explicit: whatever the runtime inherits, a container is the OOM killer's to take.
            "oomScoreAdj": 0,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            # A fork bomb stops at its own limit, short of the VM's process table.
            "resources": {**(resources or {"pids": {"limit": DEFAULT_PIDS}}),
                          "devices": DEVICES},
            "seccomp": seccomp.profile(caps),
            **({"cgroupsPath": cgroups_path} if cgroups_path else {}),
        },
    }
