"""Container logs through a pipe into rotated files (logwriter.py), read back across the rotation
(logs.py): within size x count, the tail ends with the last lines written, a follower sees every
byte once, in order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from init.services.pod import logs
from init.services.pod.logwriter import LogWriter, files

WRITE = ("import os, sys\n"
         "fd = int(sys.argv[1])\n"
         "for i in range(int(sys.argv[2])):\n"
         "    os.write(fd, b'line %06d\\n' % i)\n")


async def _write(path: Path, lines: int, *, max_bytes: int, max_files: int,
                 follow: bool = False) -> bytes:
    writer = LogWriter(path, max_bytes=max_bytes, max_files=max_files)
    proc = subprocess.Popen([sys.executable, "-c", WRITE, str(writer.write_end), str(lines)],
                            pass_fds=[writer.write_end])
    writer.start()
    got = b""
    if follow:
        async for chunk in logs.read(path, max_files=max_files, tail=0, follow=True,
                                     finished=writer.done.is_set):
            got += chunk
    await asyncio.wait_for(writer.done.wait(), 60)
    assert await asyncio.to_thread(proc.wait) == 0
    return got


def _expected(lines: int) -> bytes:
    return b"".join(b"line %06d\n" % i for i in range(lines))


def test_rotation_keeps_size_times_count_and_the_newest_bytes(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    asyncio.run(_write(path, 20_000, max_bytes=10_000, max_files=3))  # 240 KB written
    kept = files(path, 3)
    assert [p.name for p in kept] == ["stdout.log.2", "stdout.log.1", "stdout.log"]
    assert all(p.stat().st_size <= 10_000 for p in kept)
    stream = b"".join(p.read_bytes() for p in kept)
    assert _expected(20_000).endswith(stream)  # the newest bytes, whole and in order

    async def tail(n: int) -> bytes:
        return b"".join([c async for c in logs.read(path, max_files=3, tail=n, follow=False,
                                                    finished=lambda: True)])

    assert asyncio.run(tail(2)) == b"line 019998\nline 019999\n"
    # More lines than the current file holds: the tail reaches into the rotated ones.
    last = asyncio.run(tail(1500))
    assert last == b"".join(b"line %06d\n" % i for i in range(18_500, 20_000))


def test_a_follower_sees_every_byte_once_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    got = asyncio.run(_write(path, 30_000, max_bytes=8192, max_files=100, follow=True))
    assert got == _expected(30_000)
    assert len(files(path, 100)) > 20  # it did rotate, many times, while being followed
