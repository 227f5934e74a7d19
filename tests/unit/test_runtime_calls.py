"""Runtime calls against a scripted runtime: the error text of a failed call comes from its --log
file, a successful call says nothing, a hung one is killed, and no call leaves its log behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from init.services.task.runtime import Runtime, RuntimeError_
from init.system.reaper import Reaper

# Writes a line to its --log file, then behaves as its subcommand says.
FAKE = """#!/bin/sh
log=$4
echo "runtime says: $5 $6" >> "$log"
case "$5" in
  start) exit 0 ;;
  kill) exit 1 ;;
  delete) exec sleep 30 ;;
esac
"""


def _runtime(tmp_path: Path, reaper: Reaper, timeout: float = 10.0) -> Runtime:
    binary = tmp_path / "fake-runtime"
    binary.write_text(FAKE)
    binary.chmod(0o755)
    return Runtime(binary, tmp_path / "state", reaper, no_pivot=False, call_timeout=timeout)


def _run(body: Callable[[Reaper], Awaitable[None]]) -> None:
    async def main() -> None:
        reaper = Reaper()
        reaper.install(asyncio.get_running_loop())
        await body(reaper)

    asyncio.run(main())


def test_a_successful_call_leaves_no_log(tmp_path: Path) -> None:
    async def body(reaper: Reaper) -> None:
        runtime = _runtime(tmp_path, reaper)
        await runtime.start("c1")
        assert list((tmp_path / "state").iterdir()) == []

    _run(body)


def test_a_failed_call_reports_its_log_and_removes_it(tmp_path: Path) -> None:
    async def body(reaper: Reaper) -> None:
        runtime = _runtime(tmp_path, reaper)
        with pytest.raises(RuntimeError_, match="runtime says: kill c1"):
            await runtime.kill("c1", "TERM")
        assert list((tmp_path / "state").iterdir()) == []

    _run(body)


def test_a_hung_call_is_killed_and_leaves_no_log(tmp_path: Path) -> None:
    async def body(reaper: Reaper) -> None:
        runtime = _runtime(tmp_path, reaper, timeout=0.3)
        with pytest.raises(RuntimeError_, match="did not answer in 0 s: killed"):
            await asyncio.wait_for(runtime.delete("c1"), 10)
        assert list((tmp_path / "state").iterdir()) == []

    _run(body)
