"""The few syscalls Python's os module lacks, through ctypes: mount, umount2, reboot, prctl,
openat2; and glibc's malloc_trim."""

from __future__ import annotations

import ctypes
import os

# The process's own symbols, libc's among them: no library search (ctypes.util.find_library
# imports subprocess and may run ldconfig or gcc to answer).
_libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_NOATIME = 1 << 10
MS_BIND = 1 << 12
MS_RELATIME = 1 << 21
MNT_DETACH = 2

RB_POWER_OFF = 0x4321FEDC
RB_AUTOBOOT = 0x01234567
RB_DISABLE_CAD = 0

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15

SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall tables merged)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


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


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2(RESOLVE_IN_ROOT): open `path` as if `root_fd` were `/` — symlinks (absolute ones
    too) and `..` resolve inside it, as they would for a process chrooted there."""
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    _libc.syscall.restype = ctypes.c_long
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_long(root_fd),
                       ctypes.c_char_p(path.encode()), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the kernel; False where the libc has no malloc_trim.

    glibc returns heap memory only from the top of the heap on its own: what imports and pulls
    freed below a live block stays in the process's RSS (3.3 MB of the init's at READY,
    measured on the host) until malloc_trim releases it.
    """
    trim = getattr(_libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True


# capget/capset (linux/capability.h, version 3: two 32-bit words per set).
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_SYS_RESOURCE = 24


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _caps() -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return header, data


def has_effective(cap: int) -> bool:
    """Whether this thread holds `cap` in its effective set."""
    try:
        _, data = _caps()
    except OSError:
        return False
    return bool(data[cap // 32].effective & (1 << (cap % 32)))


def set_effective(cap: int, on: bool) -> bool:
    """Raise or lower one capability in this thread's effective set (capabilities are per
    thread); returns whether it was effective before."""
    header, data = _caps()
    word, bit = cap // 32, 1 << (cap % 32)
    was = bool(data[word].effective & bit)
    data[word].effective = (data[word].effective | bit) if on else (data[word].effective & ~bit)
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    return was
