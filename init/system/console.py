"""Put stdin/stdout/stderr on the serial console.

The kernel starts /init with /dev/console (whatever console= last names) as its stdio, or nothing
if the node is missing. We prefer the first serial port, where hypervisors capture the log, and
fall back to /dev/console.
"""

from __future__ import annotations

import os
import sys

CANDIDATES = ("/dev/ttyS0", "/dev/console")


def attach() -> str | None:
    """Open the first usable console as fds 0-2; returns its path, or None if none opened."""
    for path in CANDIDATES:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            continue
        try:
            # A serial port with no UART behind it opens but fails to write: probe it first.
            os.write(fd, b"")
        except OSError:
            os.close(fd)
            continue
        for target in (0, 1, 2):
            os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
        # Line-buffered text streams over the new fds; they live as long as the process.
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
        return path
    return None
