"""Reaping: PID 1 (or a subreaper in local mode) collects every child and orphan.

One SIGCHLD handler calls waitpid(-1) until nothing is left, so no zombie survives, whether the
child is ours (its waiter gets the status) or an orphan re-parented to us (logged and dropped).
Nothing else in the init may call waitpid: children are started with `spawn()` / `watch()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import OrderedDict

LOG = logging.getLogger("mvirt-one")


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


class Reaper:
    """Collects exit statuses; `watch(pid)` gives a future resolved with the raw wait status."""

    _UNCLAIMED_LIMIT = 256

    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[int]] = {}
        # A child may be reaped before its spawner calls watch() (e.g. started from a thread):
        # its status waits here, bounded, so the late watcher still gets it.
        self._unclaimed: OrderedDict[int, int] = OrderedDict()
        self.orphans_reaped = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before the handler existed

    def watch(self, pid: int) -> asyncio.Future[int]:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if pid in self._unclaimed:
            future.set_result(self._unclaimed.pop(pid))
        else:
            self._waiters[pid] = future
        return future

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            self._deliver(pid, status)

    def _deliver(self, pid: int, status: int) -> None:
        waiter = self._waiters.pop(pid, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(status)
            return
        self.orphans_reaped += 1
        LOG.info("reaped orphan pid %d (%s)", pid, describe_status(status))
        self._unclaimed[pid] = status
        while len(self._unclaimed) > self._UNCLAIMED_LIMIT:
            self._unclaimed.popitem(last=False)
