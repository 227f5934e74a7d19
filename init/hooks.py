"""Boot hooks: executables in a directory, run once at boot in name order.

A site that extends the initramfs (for instance by appending a second cpio with its own tools)
puts its setup steps in /etc/mvirt-one/boot.d. A hook that fails or hangs is logged and the boot
goes on: it is killed after its timeout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from init.system.reaper import Reaper, describe_status
from init.system.spawn import run_bounded

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
            await _run(hook, reaper, timeout)
        except Exception as e:  # whatever a hook does, the boot goes on
            LOG.error("boot hook %s: %s", hook, e)


async def _run(hook: Path, reaper: Reaper, timeout: float) -> None:
    try:
        status, killed = await run_bounded([str(hook)], reaper, timeout)
    except OSError as e:
        LOG.error("boot hook %s cannot start: %s", hook, e)
        return
    if killed:
        LOG.error("boot hook %s still running after %.0f s: killed", hook, timeout)
    LOG.info("boot hook %s %s", hook.name, describe_status(status))
