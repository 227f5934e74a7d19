"""READY to the host. No vsock round trip is possible on the host itself (no vsock loopback), so
this checks the failure path the boot relies on: bounded, logged, never raised. The success path
is checked by booting a VM with vsock (tests/vm)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from init.api import ready


def test_undeliverable_ready_is_logged_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError as e:
        pytest.skip(f"no AF_VSOCK on this host: {e}")
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="mvirt-one"):
        delivered = asyncio.run(ready.signal_ready(1025, timeout=0.6, retry_every=0.1))
    elapsed = time.monotonic() - start
    assert delivered is False
    assert elapsed < 3.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "READY not delivered to the host (vsock 2:1025)" in warnings[0]


def test_ready_is_cancellable() -> None:
    async def main() -> None:
        task = asyncio.create_task(ready.signal_ready(1025, timeout=30, retry_every=0.05))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError as e:
        pytest.skip(f"no AF_VSOCK on this host: {e}")
    asyncio.run(main())
