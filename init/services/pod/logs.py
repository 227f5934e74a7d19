"""Reading a container's log files: the last N lines, then (with follow) what comes next.

The files are written by the container itself (they are its stdout and stderr, opened by the
init), so nothing can block the container and nothing is lost when it exits.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

CHUNK = 64 * 1024
FOLLOW_INTERVAL = 0.2  # seconds between looks at a growing file while following


def tail_offset(path: str, lines: int) -> int:
    """The offset where the last `lines` lines of the file start (0: the whole file). Reads the
    file backwards: call it off the event loop (a log may be gigabytes of one line)."""
    if lines <= 0:
        return 0
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        count = 0
        # A final newline ends the last line; it does not start another one.
        limit = end - 1
        while pos > 0:
            step = min(CHUNK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = min(len(block), limit - pos)
            while (i := block.rfind(b"\n", 0, i)) >= 0:
                count += 1
                if count == lines:
                    return pos + i + 1
        return 0


async def read(path: str, *, tail: int, follow: bool,
               finished: Callable[[], bool], changed: asyncio.Event | None = None
               ) -> AsyncIterator[bytes]:
    """Chunks of the file from the tail offset; with follow, until `finished()` and drained."""
    try:
        offset = await asyncio.to_thread(tail_offset, path, tail)
    except FileNotFoundError:
        return
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            done = finished()  # read before draining: the last bytes come before the exit
            while chunk := f.read(CHUNK):
                yield chunk
            if not follow or done:
                return
            await asyncio.sleep(FOLLOW_INTERVAL)
