"""cancel.to_the_end: a step outlives its caller's cancellation, which comes after it."""

from __future__ import annotations

import asyncio

import pytest

from init.services.cancel import to_the_end


def test_a_cancelled_caller_waits_for_the_step_then_is_cancelled() -> None:
    async def main() -> list[str]:
        events: list[str] = []
        release = asyncio.Event()

        async def step() -> str:
            await release.wait()
            events.append("step done")
            return "result"

        async def caller() -> None:
            await to_the_end(step())
            events.append("caller went on")  # never: it was cancelled

        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        task.cancel()  # twice: still waits
        await asyncio.sleep(0.01)
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return events

    assert asyncio.run(main()) == ["step done"]


def test_without_cancellation_it_is_the_step() -> None:
    async def step() -> int:
        await asyncio.sleep(0)
        return 7

    async def failing() -> int:
        raise ValueError("no")

    assert asyncio.run(to_the_end(step())) == 7
    with pytest.raises(ValueError):
        asyncio.run(to_the_end(failing()))
