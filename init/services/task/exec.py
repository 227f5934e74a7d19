"""A process inside a running container: `runtime exec --detach`, with pipes or a terminal.

Both ways the process is detached from the runtime and re-parented to the init, so its exit comes
from the reaper like a container's. With a terminal, the runtime hands the pty's master over the
console socket (SCM_RIGHTS); resizing is TIOCSWINSZ on that master.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import struct
import tempfile
import termios
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from init.services.task.runtime import EXEC_WORK_PREFIX, Runtime, RuntimeError_
from init.system.reaper import clock

CONSOLE_TIMEOUT = 30.0
CHUNK = 64 * 1024


class ExecProcess:
    """The running process: write stdin, read outputs, resize, wait for the exit code."""

    def __init__(self, pid: int, status: asyncio.Future[int], *, stdin: int,
                 outputs: dict[str, int], tty: bool) -> None:
        self.pid = pid
        self.status = status
        self.stdin = stdin  # -1 once closed
        self.outputs = outputs  # "stdout"/"stderr" → our read end (tty: "stdout" is the master)
        self.tty = tty

    async def write(self, data: bytes) -> None:
        """Write all of `data`, waiting (not spinning) while the pipe or terminal is full."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view and self.stdin >= 0:
            try:
                n = os.write(self.stdin, view)
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self.stdin, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self.stdin)
                continue
            except OSError:  # the process closed its stdin or exited: the rest is dropped
                return
            view = view[n:]

    async def close_stdin(self) -> None:
        if self.tty:
            await self.write(b"\x04")  # EOF on a terminal is ^D, not a close
        elif self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def resize(self, width: int, height: int) -> None:
        if self.tty:
            fcntl.ioctl(self.outputs["stdout"], termios.TIOCSWINSZ,
                        struct.pack("HHHH", height, width, 0, 0))

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        """What the process writes to output `name`, read only when the consumer asks for more:
        a consumer that waits leaves the bytes in the pipe, and the process blocks on it. Ends
        at the output's end, or once the process has exited and the pipe is empty (a child it
        left behind may hold the pipe open: its output is not waited for)."""
        fd = self.outputs[name]
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                if self.status.done():
                    return
                readable = loop.create_future()
                loop.add_reader(fd, _wake, readable)
                try:
                    await asyncio.wait([readable, self.status],
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    loop.remove_reader(fd)
                    readable.cancel()
                continue
            except OSError:  # EIO: the terminal's last user is gone
                return
            if not data:
                return
            yield data

    def kill(self) -> None:
        """SIGKILL the process unless it has exited (its pid is ours until the reaper has its
        status, so this never hits another process)."""
        if not self.status.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def exit_code(self, status: int) -> int:
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

    def close(self) -> None:
        fds = {self.stdin, *self.outputs.values()}
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.stdin = -1


def _wake(future: asyncio.Future[None]) -> None:
    # A reader callback runs for as long as the fd is readable, maybe again before the waiter.
    if not future.done():
        future.set_result(None)


def _args(cid: str, command: Sequence[str], env: Sequence[str], pid_file: Path,
          console: Path | None) -> list[str]:
    args = ["exec", "--detach", "--pid-file", str(pid_file)]
    if console is not None:
        args += ["--tty", "--console-socket", str(console)]
    for item in env:
        args += ["--env", item]
    return [*args, cid, *command]


async def start(runtime: Runtime, cid: str, command: Sequence[str], env: Sequence[str], *,
                tty: bool) -> ExecProcess:
    """Start `command` in container `cid`; RuntimeError_ with the runtime's text on failure."""
    if not command:
        raise ValueError("exec needs a command")
    work = Path(tempfile.mkdtemp(prefix=EXEC_WORK_PREFIX, dir=runtime.root))
    try:
        if tty:
            return await _start_tty(runtime, cid, command, env, work)
        return await _start_pipes(runtime, cid, command, env, work)
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


async def _start_pipes(runtime: Runtime, cid: str, command: Sequence[str],
                       env: Sequence[str], work: Path) -> ExecProcess:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours = (in_w, out_r, err_r)
    since = clock()
    try:
        result = await runtime.call(_args(cid, command, env, work / "pid", None),
                                    stdin=in_r, stdout=out_w, stderr=err_w)
        if not result.ok:
            raise RuntimeError_(result.error)
        pid = _read_pid(work / "pid")
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    for fd in ours:
        os.set_blocking(fd, False)
    return ExecProcess(pid, runtime.reaper.watch(pid, since), stdin=in_w,
                       outputs={"stdout": out_r, "stderr": err_r}, tty=False)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError_(f"the runtime left no usable pid file ({e})") from e


async def _start_tty(runtime: Runtime, cid: str, command: Sequence[str], env: Sequence[str],
                     work: Path) -> ExecProcess:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(work / "console.sock"))
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    since = clock()
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    try:
        call = asyncio.ensure_future(runtime.finish_call(runtime.start_call(
            _args(cid, command, env, work / "pid", work / "console.sock"))))
        await asyncio.wait([call, accept], timeout=CONSOLE_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
        if not accept.done():
            accept.cancel()
            result = await call
            raise RuntimeError_(result.error or "the runtime sent no terminal")
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 1024, 1)
        result = await call
        if not fds:
            raise RuntimeError_("the runtime sent no terminal")
        master, *extra = fds
        for fd in extra:
            os.close(fd)
        if not result.ok:
            os.close(master)
            raise RuntimeError_(result.error)
    finally:
        accept.cancel()
        listener.close()
    try:
        pid = _read_pid(work / "pid")
    except BaseException:
        os.close(master)
        raise
    os.set_blocking(master, False)
    return ExecProcess(pid, runtime.reaper.watch(pid, since), stdin=master,
                       outputs={"stdout": master}, tty=True)
