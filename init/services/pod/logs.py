"""Reading a container's log: the last N lines, then (with follow) what comes next, across the
rotated files (logwriter.py) as one stream, neither losing nor repeating a byte.

A reader holds its file open by descriptor: when the writer rotates it (a rename), the reader
finishes the bytes of that file, then goes on with the file that came after it (found by its
inode among the log's files), so a rotation between two reads costs nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from init.services.pod.logwriter import files

CHUNK = 64 * 1024
FOLLOW_INTERVAL = 0.2  # seconds between looks at a growing file while following


def _scan(path: Path, lines: int, *, last: bool) -> tuple[int | None, int]:
    """Backwards through one file: (the offset where the `lines`-th newline from the end is
    passed, or None if the file has fewer; how many newlines it has). The stream's final
    newline ends the last line and does not start another (`last`: this file ends the log)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        count = 0
        limit = end - 1 if last else end
        while pos > 0:
            step = min(CHUNK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = min(len(block), limit - pos)
            while (i := block.rfind(b"\n", 0, i)) >= 0:
                count += 1
                if count == lines:
                    return pos + i + 1, count
        return None, count


def tail_start(chain: list[Path], lines: int) -> tuple[int, int]:
    """(index in `chain`, offset) where the last `lines` lines of the files, read in order,
    begin; (0, 0) for all of them. Reads backwards: call it off the event loop."""
    if lines <= 0 or not chain:
        return 0, 0
    wanted = lines
    # The stream's last byte is in the newest file that is not empty (a rotation may have just
    # begun an empty one).
    sizes = []
    for p in chain:
        try:
            sizes.append(p.stat().st_size)
        except FileNotFoundError:
            sizes.append(0)
    last = max((i for i, size in enumerate(sizes) if size), default=len(chain) - 1)
    for index in range(last, -1, -1):
        try:
            offset, count = _scan(chain[index], wanted, last=index == last)
        except FileNotFoundError:
            continue
        if offset is not None:
            return index, offset
        wanted -= count
    return 0, 0


def tail_offset(path: str, lines: int) -> int:
    """The offset where the last `lines` lines of one file start (0: the whole file)."""
    return tail_start([Path(path)], lines)[1]


def _after(path: Path, max_files: int, inode: int) -> Path | None:
    """The log file that follows the one with `inode`: the next newer one; the oldest there is
    if that one was rotated away altogether; None if it is the current file."""
    chain = files(path, max_files)
    inodes = []
    for p in chain:
        try:
            inodes.append(p.stat().st_ino)
        except FileNotFoundError:
            inodes.append(-1)
    if inode in inodes:
        i = inodes.index(inode)
        return chain[i + 1] if i + 1 < len(chain) else None
    return chain[0] if chain else None


async def read(path: Path, *, max_files: int, tail: int, follow: bool,
               finished: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Chunks of the log from the tail; with follow, until `finished()` (every byte written)
    and drained."""
    chain = await asyncio.to_thread(files, path, max_files)
    if not chain:
        return
    index, offset = await asyncio.to_thread(tail_start, chain, tail)
    current: Path | None = chain[index]
    while current is not None:
        try:
            f = open(current, "rb")  # noqa: SIM115 - closed by the `with` below
        except FileNotFoundError:
            current = await asyncio.to_thread(_after, path, max_files, -1)
            offset = 0
            continue
        with f:
            f.seek(offset)
            inode = os.fstat(f.fileno()).st_ino
            while True:
                done = finished()  # read before draining: the last bytes come before it
                while chunk := f.read(CHUNK):
                    yield chunk
                following = await asyncio.to_thread(_after, path, max_files, inode)
                if following is not None:
                    break
                if not follow or done:
                    return
                await asyncio.sleep(FOLLOW_INTERVAL)
        current, offset = following, 0
