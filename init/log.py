"""Logging for the init: every line carries the time since kernel start (CLOCK_BOOTTIME).

In a VM, boot time is what users measure, so the log says where each phase ends on the same clock
the kernel's own `[    1.234]` lines use.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG = logging.getLogger("mvirt-one")


class _BootTimeFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.clock_gettime(time.CLOCK_BOOTTIME)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"[{stamp:9.3f}] mvirt-one: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(level: str = "info") -> None:
    """Send log lines to stderr (the console in PID 1 mode), replacing earlier handlers."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_BootTimeFormatter())
    root.addHandler(handler)
    # Libraries (pyroute2, grpclib, asyncio) speak at warning and above; `level` is ours.
    root.setLevel(logging.WARNING)
    LOG.setLevel(getattr(logging, level.upper(), logging.INFO))
    # pyroute2 warns at import that /proc/net/psched is missing (no tc in our kernel): noise.
    logging.getLogger("pyroute2").setLevel(logging.ERROR)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Log a boot phase with its duration; the line is what boot tests and benchmarks read."""
    start = time.monotonic()
    yield
    LOG.info("phase %s done in %.0f ms", name, (time.monotonic() - start) * 1000)
