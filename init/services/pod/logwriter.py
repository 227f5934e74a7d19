"""A container's output into its log files, rotated by size so a chatty container cannot fill
the data directory.

The container writes into a pipe; the init moves what arrives into `NAME.log` with splice(2)
(no copy through Python), and when the file reaches `max_bytes` it becomes `NAME.log.1` (the
older ones shift up to `NAME.log.{max_files - 1}`, the oldest goes) and a new `NAME.log` begins,
as the kubelet rotates with containerLogMaxSize and containerLogMaxFiles. Nothing is lost or
repeated: the bytes wait in the pipe while a file is rotated, and a container that writes faster
than the init moves them blocks on the full pipe (64 KiB) instead of growing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

LOG = logging.getLogger("mvirt-one")

CHUNK = 1 << 20  # bytes moved per call
BUDGET = 4 << 20  # bytes moved per readiness, so a container writing without pause (`yes`)
# cannot keep the event loop from the rest of its work
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def files(path: Path, max_files: int) -> list[Path]:
    """The log's files that exist, oldest first, the current one last."""
    found = [rotated(path, n) for n in range(max_files - 1, 0, -1)]
    return [p for p in [*found, path] if p.exists()]


class LogWriter:
    """Moves one pipe's bytes into a rotated log; `done` is set once the writers are gone (every
    process holding the pipe's write end exited) and every byte is in the files."""

    def __init__(self, path: Path, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max(max_files, 1)
        read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        self._read = read_end
        flags = fcntl.fcntl(read_end, fcntl.F_GETFL)
        fcntl.fcntl(read_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._file = os.open(path, _FLAGS, 0o640)
        self._size = os.lseek(self._file, 0, os.SEEK_END)
        self.done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Begin moving bytes; close our copy of the write end (the container has its own)."""
        os.close(self.write_end)
        self.write_end = -1
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read, self._readable)

    def _readable(self) -> None:
        moved = 0
        try:
            while moved < BUDGET:
                room = self.max_bytes - self._size
                if room <= 0:
                    self._rotate()
                    room = self.max_bytes
                n = self._move(min(room, CHUNK))
                if n == 0:
                    self._finish()
                    return
                self._size += n
                moved += n
        except BlockingIOError:
            return  # the pipe is empty for now
        except OSError as e:
            # A full data directory: the bytes stay in the pipe (the container blocks) rather
            # than being dropped; the next readiness tries again.
            LOG.error("log %s: %s", self.path, e)
            if self._loop is not None:
                self._loop.remove_reader(self._read)
                self._loop.call_later(1.0, self._retry)

    def _retry(self) -> None:
        if self._loop is not None and self._read >= 0:
            self._loop.add_reader(self._read, self._readable)

    def _move(self, count: int) -> int:
        try:
            return os.splice(self._read, self._file, count, flags=os.SPLICE_F_NONBLOCK)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            data = os.read(self._read, count)  # a file system without splice
            view = memoryview(data)
            while view:
                view = view[os.write(self._file, view):]
            return len(data)

    def _rotate(self) -> None:
        os.close(self._file)
        self._file = -1
        oldest = rotated(self.path, self.max_files - 1)
        if self.max_files == 1:
            self.path.unlink(missing_ok=True)
        else:
            oldest.unlink(missing_ok=True)
            for n in range(self.max_files - 2, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(rotated(self.path, n), rotated(self.path, n + 1))
            os.rename(self.path, rotated(self.path, 1))
        self._file = os.open(self.path, _FLAGS | os.O_TRUNC, 0o640)
        self._size = 0

    def _finish(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._read)
        self.close()
        self.done.set()

    def close(self) -> None:
        if self._loop is not None and self._read >= 0:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.remove_reader(self._read)
        for fd in (self._read, self.write_end, self._file):
            if fd >= 0:
                os.close(fd)
        self._read = self.write_end = self._file = -1
