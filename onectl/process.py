"""onectl's child processes: waiting for something while they must stay alive, and stopping one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from onectl.errors import OnectlError

POLL = 0.02  # seconds between looks while waiting


def wait_until(done: Callable[[], bool], *, timeout: float, alive: Callable[[], None],
               expired: str) -> None:
    """Return once `done()` is true. `alive()` raises when a process the wait depends on has
    died; after `timeout` seconds OnectlError(`expired`) is raised."""
    deadline = time.monotonic() + timeout
    while not done():
        alive()
        if time.monotonic() > deadline:
            raise OnectlError(expired)
        time.sleep(POLL)


def terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, and SIGKILL if it is still there after `grace` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
