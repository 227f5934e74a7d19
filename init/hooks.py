"""Boot hooks: executables in a directory, run once at boot in name order.

A site that extends the initramfs (for instance by appending a second cpio with its own tools)
puts its setup steps in /etc/mvirt-one/boot.d. A hook that fails or hangs is logged and the boot
goes on: it is killed after its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from init.system.reaper import Reaper, describe_status
from init.system.spawn import spawn

LOG = logging.getLogger("mvirt-one")


def list_hooks(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    return [p for p in entries if p.is_file() and os.access(p, os.X_OK)]


async def run_all(directory: Path, reaper: Reaper, timeout: float = 30.0) -> None:
    for hook in list_hooks(directory):
        try:
            pid = spawn([str(hook)])
        except OSError as e:
            LOG.error("boot hook %s cannot start: %s", hook, e)
            continue
        exited = reaper.watch(pid)
        try:
            status = await asyncio.wait_for(asyncio.shield(exited), timeout)
        except TimeoutError:
            LOG.error("boot hook %s still running after %.0f s: killed", hook, timeout)
            os.kill(pid, signal.SIGKILL)
            status = await exited
        LOG.info("boot hook %s %s", hook.name, describe_status(status))
