"""The reaper with real children of the test process: late watchers, pid reuse, expiry."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from init.system.reaper import Reaper, clock
from init.system.spawn import spawn


async def _reaped_unwatched(reaper: Reaper, argv: list[str]) -> int:
    """Spawn `argv`, watch nothing, return its pid once the reaper has collected it."""
    before = reaper.orphans_reaped
    pid = spawn(argv)
    for _ in range(500):
        if reaper.orphans_reaped > before:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"{argv} was not reaped")


def _run(body: Callable[[Reaper], object], reaper: Reaper | None = None) -> None:
    async def main() -> None:
        r = reaper or Reaper()
        r.install(asyncio.get_running_loop())
        await body(r)  # type: ignore[misc]

    asyncio.run(main())


def test_a_late_watcher_gets_the_status_of_its_process() -> None:
    async def body(reaper: Reaper) -> None:
        since = clock()
        pid = await _reaped_unwatched(reaper, ["sh", "-c", "exit 3"])
        status = await asyncio.wait_for(reaper.watch(pid, since), 1)
        assert os.waitstatus_to_exitcode(status) == 3

    _run(body)


def test_a_status_is_never_given_to_a_newer_process_with_the_same_pid() -> None:
    async def body(reaper: Reaper) -> None:
        pid = await _reaped_unwatched(reaper, ["sh", "-c", "exit 3"])
        # The pid is free again: a process started from now on may get it. Its watcher must
        # wait for its own exit, not see the old one's.
        newer = reaper.watch(pid, clock() + 0.05)
        assert not newer.done()
        newer.cancel()

    _run(body)


def test_a_child_watched_in_its_spawning_step_is_never_confused() -> None:
    async def body(reaper: Reaper) -> None:
        old = await _reaped_unwatched(reaper, ["sh", "-c", "exit 3"])
        assert not reaper.watch(old).done()  # as if spawned just now with the old pid
        pid = spawn(["sh", "-c", "exit 5"])
        status = await asyncio.wait_for(reaper.watch(pid), 5)
        assert os.waitstatus_to_exitcode(status) == 5

    _run(body)


def test_unwatched_statuses_expire() -> None:
    offset = [0.0]
    reaper = Reaper(clock=lambda: clock() + offset[0])

    async def body(reaper: Reaper) -> None:
        since = clock()
        pid = await _reaped_unwatched(reaper, ["true"])
        offset[0] = Reaper.UNCLAIMED_TTL + 1
        assert not reaper.watch(pid, since).done()  # dropped: nobody came for it in time

    _run(body, reaper)
