"""Steps that must not be cut in half when their caller is cancelled (a client that went away).

A cancelled await of a thread or a child process does not stop the thread or the process: the
mount is still made, the runtime still creates the container. Whoever undoes the caller's work
must find such a step finished, not still running: `to_the_end` waits for it, then passes the
cancellation on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def to_the_end(step: Awaitable[T]) -> T:
    """Await `step` to its end even if the caller is cancelled meanwhile; then raise the
    caller's CancelledError (the step's result or error is dropped: its effects are undone by
    whoever handles the cancellation)."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])  # unlike `await task`, a cancel here leaves task alone
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: never reported as "exception was never retrieved"
        raise asyncio.CancelledError
    return task.result()
