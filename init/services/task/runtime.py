"""The OCI runtime command line (`create`, `start`, `kill`, `delete`, `exec`), any implementation.

Each call is a child started with posix_spawn and waited for through the reaper (never
subprocess: it would race the reaper for the status). The runtime's own diagnostics go to a
`--log` file per call, because its stderr is the container's stderr during `create`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from init.services.cancel import to_the_end
from init.system.reaper import Reaper
from init.system.spawn import spawn

LOG = logging.getLogger("mvirt-one")

# Seconds a runtime call may take before it is killed: far beyond a healthy create or exec (well
# under a second, a few under TCG), short enough that a hung runtime fails the call readably.
CALL_TIMEOUT = 60.0
# The work directories of exec'd processes, beside the containers' state in the runtime's root:
# a leading dot, which no container id (init/services/pod/ids.py) can start with.
EXEC_WORK_PREFIX = ".exec-"


class RuntimeError_(Exception):
    """The runtime refused or failed: the message is its own error text."""


def root_is_initramfs(mounts: str = "/proc/self/mounts") -> bool:
    """pivot_root(2) fails on the initramfs (rootfs/ramfs): the runtime must be told --no-pivot."""
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    fstype = ""
    for line in lines:  # the last mount on / is the visible one
        words = line.split()
        if len(words) > 2 and words[1] == "/":
            fstype = words[2]
    return fstype in ("rootfs", "ramfs")


def error_text(log: str) -> str:
    """The readable part of a runtime log: runc writes logfmt or JSON lines, crun plain text."""
    messages: list[str] = []
    for line in log.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "msg" in doc:
                if doc.get("level") in ("error", "fatal", None):
                    messages.append(str(doc["msg"]))
                continue
        if 'msg="' in line:
            msg = line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
            if "level=error" in line or "level=fatal" in line:
                messages.append(msg)
            continue
        messages.append(line)
    # runc repeats the final error; keep each message once, in order.
    return "; ".join(dict.fromkeys(messages))


class Call(NamedTuple):
    """A runtime call under way."""

    pid: int
    log: str  # the runtime's --log file
    exited: asyncio.Future[int]  # its wait status, from the reaper


@dataclass(frozen=True)
class Result:
    status: int  # raw wait status
    error: str  # the runtime's error text ("" on success)

    @property
    def ok(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0


class Runtime:
    """One OCI runtime binary with its state under `root` (one per init: tests run many)."""

    def __init__(self, binary: Path, root: Path, reaper: Reaper, *,
                 no_pivot: bool | None = None, call_timeout: float = CALL_TIMEOUT) -> None:
        self.binary = binary
        self.root = root
        self.reaper = reaper
        self.no_pivot = root_is_initramfs() if no_pivot is None else no_pivot
        self.call_timeout = call_timeout

    def _argv(self, log: str, args: Sequence[str]) -> list[str]:
        return [str(self.binary), "--root", str(self.root), "--log", log, *args]

    def start_call(self, args: Sequence[str], *, stdin: int | None = None,
                   stdout: int | None = None, stderr: int | None = None) -> Call:
        """Spawn one call, watched from the start; the caller waits with finish_call."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, log = tempfile.mkstemp(prefix="call-", suffix=".log", dir=self.root)
        os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = spawn(self._argv(log, args),
                        stdin=devnull if stdin is None else stdin,
                        stdout=devnull if stdout is None else stdout,
                        stderr=devnull if stderr is None else stderr)
        except OSError as e:
            os.unlink(log)
            raise RuntimeError_(f"cannot run the OCI runtime {self.binary}: {e}") from e
        finally:
            os.close(devnull)
        return Call(pid, log, self.reaper.watch(pid))

    async def finish_call(self, call: Call) -> Result:
        """Wait for a call to end, killed (with its process group) after `call_timeout`; its
        result with the runtime's error text. A cancelled caller still waits for the end (see
        cancel.to_the_end): what the runtime did is then known, and can be undone."""
        return await to_the_end(self._finish(call))

    async def _finish(self, call: Call) -> Result:
        pid, log, exited = call
        try:
            try:
                status = await asyncio.wait_for(asyncio.shield(exited), self.call_timeout)
            except TimeoutError:
                # Its own session and group (spawn's setsid): whatever it started goes with it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                return Result(await exited, f"{self.binary.name} did not answer in "
                                            f"{self.call_timeout:.0f} s: killed")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                return Result(status, "")  # only a failure has something to say: no log read
            try:
                text = await asyncio.to_thread(Path(log).read_text, errors="replace")
            except OSError:
                text = ""
        finally:
            Path(log).unlink(missing_ok=True)
        from init.system.reaper import describe_status

        return Result(status, error_text(text) or f"{self.binary.name} {describe_status(status)}")

    async def call(self, args: Sequence[str], *, stdin: int | None = None,
                   stdout: int | None = None, stderr: int | None = None) -> Result:
        return await self.finish_call(self.start_call(args, stdin=stdin, stdout=stdout,
                                                      stderr=stderr))

    async def create(self, cid: str, bundle: Path, pid_file: Path, *, stdout: int,
                     stderr: int) -> int:
        """Create the container with the given files as its stdout/stderr; returns its pid."""
        args = ["create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if self.no_pivot:
            args.append("--no-pivot")
        result = await self.call([*args, cid], stdout=stdout, stderr=stderr)
        if not result.ok:
            raise RuntimeError_(result.error)
        return int(pid_file.read_text().strip())

    async def _checked(self, args: Sequence[str]) -> None:
        result = await self.call(args)
        if not result.ok:
            raise RuntimeError_(result.error)

    async def start(self, cid: str) -> None:
        await self._checked(["start", cid])

    async def kill(self, cid: str, signal: str) -> None:
        await self._checked(["kill", cid, signal])

    async def update(self, cid: str, resources_file: Path) -> None:
        """Change a running container's cgroup limits (`update --resources FILE`, runc's and
        crun's flag alike)."""
        await self._checked(["update", "--resources", str(resources_file), cid])

    async def delete(self, cid: str) -> None:
        await self._checked(["delete", "--force", cid])
