"""The few syscalls Python's os module lacks, through ctypes: mount, umount2, reboot, prctl."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_NOATIME = 1 << 10
MS_RELATIME = 1 << 21
MNT_DETACH = 2

RB_POWER_OFF = 0x4321FEDC
RB_AUTOBOOT = 0x01234567
RB_DISABLE_CAD = 0

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
        f"mount {fstype} on {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def reboot(command: int) -> None:
    _check(_libc.reboot(ctypes.c_int(command)), "reboot")


def set_child_subreaper() -> None:
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
