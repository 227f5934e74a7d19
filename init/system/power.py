"""The end of PID 1: stop every process, sync, unmount, power off with reboot(2).

PID 1 must never simply exit (the kernel panics with "Attempted to kill init"), so the last call is
reboot(2), and if even that fails the process parks forever instead of returning.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from init.system import libc, mounts
from init.system.reaper import Reaper

LOG = logging.getLogger("mvirt-one")


def terminate_all(reaper: Reaper, grace_seconds: float) -> None:
    """SIGTERM every other process, wait up to the grace period, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 2.0)):
        try:
            os.kill(-1, sig)  # from PID 1: every process except ourselves
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reaper.reap()
            if not _other_processes():
                return
            time.sleep(0.02)


def _other_processes() -> bool:
    me = str(os.getpid())
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if entry.isdigit() and entry != me and not _is_kernel_thread(entry):
            return True
    return False


def _is_kernel_thread(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(1) == b""
    except OSError:
        return True


def power_off(reaper: Reaper, *, grace_seconds: float = 5.0, reboot: bool = False) -> None:
    """Bring the machine down; never returns."""
    try:
        LOG.info("stopping all processes")
        terminate_all(reaper, grace_seconds)
        LOG.info("syncing and unmounting filesystems")
        os.sync()
        mounts.unmount_all()
        os.sync()
        LOG.info("%s", "rebooting" if reboot else "powering off")
        libc.reboot(libc.RB_AUTOBOOT if reboot else libc.RB_POWER_OFF)
    except BaseException:
        LOG.exception("power-off failed")
    while True:  # reboot(2) did not take us down: park, never exit
        signal.pause()
