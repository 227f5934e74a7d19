"""The image RPCs (PullImage, ListImages, RemoveImage) on top of the image service.

Kept apart from service.py so OneService only delegates. Image errors carry the gRPC status
they mean (`grpc_status`, mapped in OneService's guard): a bad reference is INVALID_ARGUMENT, an
unknown image NOT_FOUND, an image in use FAILED_PRECONDITION, an unreachable registry UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from grpclib.server import Stream

from init.api import calls
from oneproto import one_msgs

if TYPE_CHECKING:
    from init.services.image import Image, ImageService
    from init.services.image.puller import Progress
    from init.services.pod.service import PodService


def image_info(image: Image) -> one_msgs.ImageInfo:
    c = image.config
    return one_msgs.ImageInfo(
        references=image.references, digest=image.digest, size=image.size, created=c.created,
        architecture=c.architecture, os=c.os, entrypoint=c.entrypoint, cmd=c.cmd, env=c.env,
        working_dir=c.working_dir, user=c.user, exposed_ports=c.exposed_ports, labels=c.labels)


class LatestProgress:
    """A pull's progress as its client can take it: the latest step per layer. The pull never
    waits for the client, and a client that reads slowly (or not at all) gets fewer, newer
    steps instead of a backlog that grows with the pull."""

    def __init__(self) -> None:
        self._pending: dict[str, Progress] = {}  # layer ("" for the image) → latest step
        self._changed = asyncio.Event()
        self._closed = False

    def put(self, p: Progress) -> None:
        self._pending[p.layer] = p
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def get(self) -> Progress | None:
        """The oldest layer's latest step; None once closed and drained."""
        while not self._pending:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        return self._pending.pop(next(iter(self._pending)))


async def pull(images: ImageService,
               stream: Stream[one_msgs.PullImageRequest, one_msgs.PullImageProgress]) -> None:
    request = await calls.request(stream)
    credential = None
    if request.username:
        from init.services.image.auth import Credential

        credential = Credential(request.username, request.password)
    steps = LatestProgress()
    task = asyncio.ensure_future(images.pull(request.reference, steps.put,
                                             credential=credential))
    task.add_done_callback(lambda _: steps.close())
    try:
        while (p := await steps.get()) is not None:
            if p.status == "done":
                continue  # the last message carries the image, below
            await stream.send_message(one_msgs.PullImageProgress(
                status=p.status, layer=p.layer, bytes_done=p.done, bytes_total=p.total))
        image = await task
    finally:
        # A client that goes away stops its stream, not the pull: others may wait for it, and
        # the blobs fetched so far are kept.
        task.cancel()
    await stream.send_message(one_msgs.PullImageProgress(
        status="done", bytes_done=image.size, bytes_total=image.size, image=image_info(image)))


async def list_images(images: ImageService,
                      stream: Stream[one_msgs.Empty, one_msgs.ListImagesResponse]) -> None:
    await stream.recv_message()
    found = await asyncio.to_thread(images.list)
    await stream.send_message(one_msgs.ListImagesResponse(images=[image_info(i) for i in found]))


async def remove(images: ImageService, pods: PodService | None,
                 stream: Stream[one_msgs.RemoveImageRequest, one_msgs.RemoveImageResponse]
                 ) -> None:
    request = await calls.request(stream)
    if pods is None:
        removed = await images.remove(request.reference, collect=False)
    else:
        # From the in-use check to the end: a container taking the image meanwhile waits, then
        # finds it gone and pulls it again.
        async with pods.image_use:
            removed = await images.remove(request.reference, pods.image_in_use, collect=False)
    # Blobs go once no pull runs; CreatePod (which needs image_use) does not wait for that.
    await images.collect()
    await stream.send_message(one_msgs.RemoveImageResponse(removed=removed))
