"""Server streams against a client that reads nothing: what the init holds for it stays bounded."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

from init.api import images as images_api
from init.services.image.puller import Progress
from oneproto import one_msgs

STEPS = 100_000


class StuckStream:
    """A grpclib stream whose client never reads: the first send is taken, the next one waits
    for flow control forever."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self.sent: list[Any] = []
        self._never = asyncio.Event()

    async def recv_message(self) -> Any:
        return self._request

    async def send_message(self, msg: Any) -> None:
        self.sent.append(msg)
        if len(self.sent) > 1:
            await self._never.wait()


class ChattyImages:
    """An image service whose pull reports STEPS progress steps over three layers."""

    def __init__(self) -> None:
        self.reported = asyncio.Event()

    async def pull(self, ref: str, progress: Any, *, credential: Any = None) -> Any:
        for i in range(STEPS):
            progress(Progress("downloading", f"sha256:{i % 3}", i, STEPS, "sha256:img"))
            if i % 1000 == 0:
                await asyncio.sleep(0)  # as the pull's thread does: steps come between sends
        self.reported.set()
        await asyncio.Event().wait()  # the pull goes on (a big layer)
        raise AssertionError("unreachable")


def test_pull_progress_for_a_silent_client_stays_bounded() -> None:
    async def main() -> tuple[int, list[Any]]:
        images = ChattyImages()
        stream = StuckStream(one_msgs.PullImageRequest(reference="example/x"))
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        call = asyncio.ensure_future(images_api.pull(images, stream))  # type: ignore[arg-type]
        await asyncio.wait_for(images.reported.wait(), 60)
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return held, stream.sent

    held, sent = asyncio.run(main())
    assert held < 256 << 10, f"{held} bytes held for a client that reads nothing"
    assert len(sent) == 2  # it got the first step and the send of a later one started


def test_latest_progress_keeps_the_last_step_of_each_layer_in_order() -> None:
    async def main() -> list[tuple[str, str, int]]:
        steps = images_api.LatestProgress()
        steps.put(Progress("resolving"))
        steps.put(Progress("downloading", "sha256:a", 1, 9))
        steps.put(Progress("downloading", "sha256:b", 1, 9))
        steps.put(Progress("downloading", "sha256:a", 5, 9))
        steps.put(Progress("downloaded", "sha256:a", 9, 9))
        steps.close()
        out = []
        while (p := await steps.get()) is not None:
            out.append((p.status, p.layer, p.done))
        return out

    assert asyncio.run(main()) == [("resolving", "", 0), ("downloaded", "sha256:a", 9),
                                   ("downloading", "sha256:b", 1)]

