"""A pull whose every waiter went away still has its failure collected and logged, never left
to asyncio's "exception was never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from init.services.image import ImageService
from tests.fixtures.images.registry import free_port


def test_a_failed_pull_nobody_waits_for_is_logged(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    unhandled: list[str] = []
    ref = f"127.0.0.1:{free_port()}/nothing:here"  # nothing listens: the pull fails

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, ctx: unhandled.append(str(ctx.get("message"))))
        service = ImageService(tmp_path / "data")
        waiter = asyncio.ensure_future(service.pull(ref))
        await asyncio.sleep(0.05)
        waiter.cancel()  # the only client goes away while the pull is in flight
        with pytest.raises(asyncio.CancelledError):
            await waiter
        for _ in range(600):
            if not service._inflight:
                break
            await asyncio.sleep(0.05)
        assert not service._inflight
        gc.collect()
        await asyncio.sleep(0)
        service.close()

    with caplog.at_level(logging.WARNING, logger="mvirt-one"):
        asyncio.run(run())
    gc.collect()
    assert unhandled == []
    assert any("failed with no one waiting" in r.getMessage() for r in caplog.records)
