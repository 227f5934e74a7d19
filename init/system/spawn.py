"""Starting child processes without a second waiter.

subprocess.Popen and asyncio's child watchers call waitpid() on their own pids, which races with
the reaper that must collect every child. posix_spawn starts a process and leaves its status to
the reaper alone.

PID 1 protects itself from the OOM killer (`protect_from_oom`); its children must not inherit
that, or the OOM killer would find nothing to kill: each starts with a normal score, whatever
the init's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from init.system.reaper import Reaper

# Signals the init handles itself: the child starts with their default action restored.
_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPWR,
            signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    new_session: bool = True,
) -> int:
    """Start argv[0] (searched on PATH) with the given fds as stdio; returns its pid."""
    actions: list[tuple[int, ...]] = []
    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        if fd is not None:
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    with _normal_oom_score():
        return os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env if env is not None else os.environ),
            file_actions=actions,
            setsigdef=_HANDLED,
            setsigmask=(),
            setsid=new_session,
        )


@contextlib.contextmanager
def _normal_oom_score() -> Iterator[None]:
    """The init's score is the normal one while a child is made, which inherits it at fork: no
    moment where the child (or one it starts at once) runs with the init's protection. The init
    is unprotected for that moment only (PID 1 may lower its score again: CAP_SYS_RESOURCE)."""
    with _score_lock:
        own = _oom_score_adj("self")
        changed = False
        if own != NORMAL_OOM_SCORE_ADJ:
            with contextlib.suppress(OSError):  # a child that inherits: better than no child
                _set_oom_score_adj("self", NORMAL_OOM_SCORE_ADJ)
                changed = True
        try:
            yield
        finally:
            if changed:
                with contextlib.suppress(OSError):
                    _set_oom_score_adj("self", own)


NORMAL_OOM_SCORE_ADJ = 0
PROTECTED_OOM_SCORE_ADJ = -1000  # never chosen by the OOM killer
_score_lock = threading.Lock()  # one spawn at a time changes the init's score


def _oom_score_adj(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/oom_score_adj") as f:
            return int(f.read())
    except (OSError, ValueError):
        return NORMAL_OOM_SCORE_ADJ


def _set_oom_score_adj(pid: str, value: int) -> None:
    with open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(str(value))


def protect_from_oom() -> None:
    """The OOM killer never picks this process (PID 1: its death is the VM's). OSError if not
    permitted (it takes CAP_SYS_RESOURCE)."""
    _set_oom_score_adj("self", PROTECTED_OOM_SCORE_ADJ)


async def run_bounded(argv: Sequence[str], reaper: Reaper, timeout: float, *,
                      stdout: int | None = None, stderr: int | None = None) -> tuple[int, bool]:
    """Run argv and wait for it at most `timeout` seconds; then SIGKILL its session (spawn's
    setsid: its children too). Returns (wait status, whether it was killed); OSError if it
    cannot start."""
    pid = spawn(argv, stdout=stdout, stderr=stderr)
    exited = reaper.watch(pid)
    try:
        return await asyncio.wait_for(asyncio.shield(exited), timeout), False
    except TimeoutError:
        # It may have exited (and been reaped) right at the timeout: then its pid is no
        # longer its own, and there is nothing to kill.
        if exited.done():
            return exited.result(), False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return await exited, True
