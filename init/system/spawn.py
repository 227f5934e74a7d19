"""Starting child processes without a second waiter.

subprocess.Popen and asyncio's child watchers call waitpid() on their own pids, which races with
the reaper that must collect every child. posix_spawn starts a process and leaves its status to
the reaper alone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence

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
    return os.posix_spawnp(
        argv[0],
        list(argv),
        dict(env if env is not None else os.environ),
        file_actions=actions,
        setsigdef=_HANDLED,
        setsigmask=(),
        setsid=new_session,
    )
