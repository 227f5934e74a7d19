"""Boot hooks: whatever a hook does, run_all returns and the boot goes on."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from init import hooks
from init.system.reaper import Reaper


class ReapedAtTheTimeout(Reaper):
    """A reaper that collects the hook in the very step its timeout fires: the hook has exited,
    and is reaped while run_all is giving up on it."""

    def watch(self, pid: int, since: float | None = None) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # it has exited, still a zombie

        def reap() -> None:
            future.set_result(os.waitpid(pid, 0)[1])

        asyncio.get_running_loop().call_soon(reap)
        return future


def _hook(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_a_hook_that_exits_right_at_its_timeout(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    _hook(tmp_path, "10-quick", "exit 0")
    with caplog.at_level(logging.INFO, logger="mvirt-one"):
        asyncio.run(hooks.run_all(tmp_path, ReapedAtTheTimeout(), timeout=0))
    assert "boot hook 10-quick exited with 0" in caplog.text
    assert "killed" not in caplog.text


def test_a_hung_hook_is_killed_with_its_children(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "child.pid"
    _hook(tmp_path / "d", "10-hang", f"sleep 600 & echo $! > {marker}; wait")
    _hook(tmp_path / "d", "20-next", "exit 4")

    async def main() -> None:
        reaper = Reaper()
        reaper.install(asyncio.get_running_loop())
        await hooks.run_all(tmp_path / "d", reaper, timeout=1)

    with caplog.at_level(logging.INFO, logger="mvirt-one"):
        asyncio.run(main())
    assert "boot hook 10-hang killed by signal 9" in caplog.text
    assert "boot hook 20-next exited with 4" in caplog.text
    child = int(marker.read_text())
    deadline = time.monotonic() + 10
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:  # SIGKILLed with its hook, then reaped elsewhere
            os.kill(child, 0)
            time.sleep(0.05)
