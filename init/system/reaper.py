"""Reaping: PID 1 (or a subreaper in local mode) collects every child and orphan.

One SIGCHLD handler collects exited children until none is left, so no zombie survives, whether
the child is ours (its waiter gets the status) or an orphan re-parented to us (logged, its status
kept a short while for a late watcher). Nothing else in the init may call waitpid: children are
started with `spawn()` / `watch()`.

A pid is reused once its process is reaped. So each collected status carries the start time of
its process (read from /proc while it is still a zombie), and a watcher says since when its
process can exist: a status of an older process with the same pid is never handed to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

LOG = logging.getLogger("mvirt-one")

_TICKS = os.sysconf("SC_CLK_TCK")  # units of a process's start time in /proc/PID/stat


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


def clock() -> float:
    """Seconds since boot: the clock of process start times."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _started(pid: int) -> float | None:
    """When process `pid` started (seconds since boot, to the clock tick); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name is in parentheses and may hold anything: count fields after it.
        return int(stat[stat.rindex(b")") + 2:].split()[19]) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


class _Exit(NamedTuple):
    status: int
    started: float  # the process's start (seconds since boot); its reaping time if unknown
    reaped: float


class Reaper:
    """Collects exit statuses; `watch(pid)` gives a future resolved with the raw wait status."""

    _UNCLAIMED_LIMIT = 256
    # Seconds an unwatched status is kept: a watcher comes within a runtime call (bounded to a
    # minute) of its process's start, or never.
    UNCLAIMED_TTL = 120.0

    def __init__(self, clock: Callable[[], float] = clock) -> None:
        self._clock = clock
        self._waiters: dict[int, asyncio.Future[int]] = {}
        # A child may be reaped before its spawner calls watch() (a runtime's container or
        # exec'd process, collected while the runtime call still ran): its status waits here.
        self._unclaimed: OrderedDict[int, _Exit] = OrderedDict()
        self.orphans_reaped = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before the handler existed

    def watch(self, pid: int, since: float | None = None) -> asyncio.Future[int]:
        """The exit status of `pid`, a process that exists since `since` (`clock()` taken before
        whatever made it began). None: it was spawned in this same step, so nothing collected
        so far can be its status."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._expire()
        earlier = self._unclaimed.pop(pid, None)
        # Start times are whole clock ticks: a process started after `since` started no earlier
        # than the tick `since` falls in.
        floor = (self._clock() if since is None else since) - 1 / _TICKS
        if earlier is not None and earlier.started >= floor:
            future.set_result(earlier.status)
        else:
            self._waiters[pid] = future
        return future

    def reap(self) -> None:
        while True:
            try:
                # Peek first (WNOWAIT): the zombie keeps its /proc entry, and its start time.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if info is None or info.si_pid == 0:
                return
            started = _started(info.si_pid)
            try:
                pid, status = os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                continue
            self._deliver(pid, status, started)

    def _deliver(self, pid: int, status: int, started: float | None) -> None:
        waiter = self._waiters.pop(pid, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(status)
            return
        self.orphans_reaped += 1
        LOG.info("reaped orphan pid %d (%s)", pid, describe_status(status))
        now = self._clock()
        self._unclaimed[pid] = _Exit(status, now if started is None else started, now)
        self._unclaimed.move_to_end(pid)
        self._expire()

    def _expire(self) -> None:
        oldest = self._clock() - self.UNCLAIMED_TTL
        while self._unclaimed and (len(self._unclaimed) > self._UNCLAIMED_LIMIT or
                                   next(iter(self._unclaimed.values())).reaped < oldest):
            self._unclaimed.popitem(last=False)
