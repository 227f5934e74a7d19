"""OneService: the handlers behind proto/one.proto's RPCs.

Imported only when the API starts (grpclib and h2 are costly at boot). Every handler is
wrapped by `guard`, so an unexpected exception in one call becomes INTERNAL for that call, with a
traceback in the log, and never reaches the connection, the server or the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import h2.exceptions
from grpclib import GRPCError, Status
from grpclib.const import Handler
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream

from init.api import images as images_api
from init.api import observe
from init.api import pods as pods_api
from init.net import netinfo
from init.services.errors import ServiceError
from init.services.pod.model import RunningCounts
from oneproto import one_msgs, one_service

if TYPE_CHECKING:
    from init.services.image import ImageService
    from init.services.pod.service import PodService

LOG = logging.getLogger("mvirt-one")

# The shutdown callback: (reason, grace seconds for the containers).
ShutdownRequester = Callable[[str, float], None]
NetworkReader = Callable[[], Awaitable[list[netinfo.InterfaceState]]]
StreamHandler = Callable[[Stream[Any, Any]], Awaitable[None]]


def guard(method: str, func: StreamHandler) -> StreamHandler:
    """Run one RPC: a service error becomes its gRPC status; an unexpected exception is logged
    and answered as INTERNAL."""

    async def guarded(stream: Stream[Any, Any]) -> None:
        try:
            await func(stream)
        except GRPCError as e:
            if e.message is None or len(e.message) <= MAX_STATUS_MESSAGE:
                raise  # a deliberate status: grpclib sends it as is
            raise GRPCError(e.status, _short(e.message), e.details) from e
        except ServiceError as e:
            raise GRPCError(getattr(Status, e.grpc_status, Status.INTERNAL), _short(str(e))
                            ) from e
        except (StreamTerminatedError, h2.exceptions.StreamClosedError):
            # The client went away (reset or disconnect): nobody to answer, nothing is wrong here.
            LOG.debug("API %s: client gone", method)
            raise
        except Exception as e:
            LOG.error("API %s failed: %s: %s", method, type(e).__name__, e, exc_info=True)
            raise GRPCError(Status.INTERNAL, _short(
                f"{method}: internal error in the init ({type(e).__name__}: {e})")) from e

    return guarded


# Characters of an error message sent back (grpc-message): messages quote what the client sent,
# and encoding a header costs time quadratic in its length (hpack's Huffman coder).
MAX_STATUS_MESSAGE = 1024


def _short(message: str) -> str:
    if len(message) <= MAX_STATUS_MESSAGE:
        return message
    return message[:MAX_STATUS_MESSAGE - 30] + f"... ({len(message)} characters)"


PodHandler = Callable[["PodService", Stream[Any, Any]], Awaitable[None]]


def _on_pods(handler: PodHandler) -> Any:
    """An RPC method that hands its stream to `handler` with the pod service (typed Any: each
    RPC's stub declares its own message types, the handler takes any stream)."""

    async def method(self: OneService, stream: Stream[Any, Any]) -> None:
        await handler(self._pod_service(), stream)

    method.__name__ = handler.__name__
    return method


class OneService(one_service.OneServiceBase):
    """`pods` or `images` None: that service does not run in this init, its RPCs answer
    UNAVAILABLE and Health counts nothing running."""

    def __init__(self, *, version: str, pods: PodService | None,
                 request_shutdown: ShutdownRequester, default_grace: float,
                 network: NetworkReader = netinfo.read,
                 images: ImageService | None = None) -> None:
        self._version = version
        self._images = images
        self._pods = pods
        self._request_shutdown = request_shutdown
        self._default_grace = default_grace
        self._network = network
        # The tasks answering PullImage: cancelled at shutdown, a pull ends within moments, and
        # its client should hear so before the connection closes.
        self._pull_calls: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def settling(self) -> list[asyncio.Task[Any]]:
        """The calls still running that end by themselves once the init shuts down."""
        return [t for t in self._pull_calls if not t.done()]

    def __mapping__(self) -> dict[str, Handler]:
        return {path: handler._replace(func=guard(path.rsplit("/", 1)[-1], handler.func))
                for path, handler in super().__mapping__().items()}

    # --- the VM ----------------------------------------------------------------------------

    async def Health(self, stream: Stream[one_msgs.Empty, one_msgs.HealthResponse]) -> None:
        await stream.recv_message()
        counts = self._pods.running_counts() if self._pods else RunningCounts(0, 0)
        await stream.send_message(one_msgs.HealthResponse(
            healthy=True, version=self._version,
            running_pods=counts.pods, running_containers=counts.containers))

    async def GetNetworkInfo(self, stream: Stream[one_msgs.Empty, one_msgs.NetworkInfo]) -> None:
        await stream.recv_message()
        interfaces = await self._network()
        await stream.send_message(one_msgs.NetworkInfo(interfaces=[
            one_msgs.InterfaceInfo(
                name=i.name, mac_address=i.mac_address,
                ipv4_address=i.ipv4_address, ipv4_netmask=i.ipv4_netmask,
                ipv4_gateway=i.ipv4_gateway, ipv4_dns=i.ipv4_dns,
                ipv6_address=i.ipv6_address, ipv6_gateway=i.ipv6_gateway, ipv6_dns=i.ipv6_dns,
                delegated_prefix=i.delegated_prefix)
            for i in interfaces]))

    async def Shutdown(self, stream: Stream[one_msgs.ShutdownRequest, one_msgs.Empty]) -> None:
        request = await stream.recv_message()
        grace = float(request.timeout_seconds) if request and request.timeout_seconds \
            else self._default_grace
        # Answer completely (message and status) before anything goes down: the way down
        # closes the API server, and the caller must not see a broken call.
        await stream.send_message(one_msgs.Empty())
        await stream.send_trailing_metadata()
        LOG.info("shutdown requested over the API (grace %.0f s)", grace)
        self._request_shutdown("api", grace)

    # --- images (init/api/images.py) ----------------------------------------------------------

    def _image_service(self) -> ImageService:
        if self._images is None:
            raise GRPCError(Status.UNAVAILABLE, "the image service is not running in this init")
        return self._images

    async def PullImage(self, stream: Stream[one_msgs.PullImageRequest,
                                             one_msgs.PullImageProgress]) -> None:
        task = asyncio.current_task()
        if task is not None:  # grpclib's task for the call, which sends its status too
            self._pull_calls.add(task)
        await images_api.pull(self._image_service(), stream)

    async def ListImages(self, stream: Stream[one_msgs.Empty, one_msgs.ListImagesResponse]) -> None:
        await images_api.list_images(self._image_service(), stream)

    async def RemoveImage(self, stream: Stream[one_msgs.RemoveImageRequest,
                                               one_msgs.RemoveImageResponse]) -> None:
        await images_api.remove(self._image_service(), self._pods, stream)

    # --- pods, logs and exec (init/api/pods.py) ------------------------------------------------

    def _pod_service(self) -> PodService:
        if self._pods is None:
            raise GRPCError(Status.UNAVAILABLE, "the pod service is not running in this init")
        return self._pods

    CreatePod = _on_pods(pods_api.create)
    StartPod = _on_pods(pods_api.start)
    StopPod = _on_pods(pods_api.stop)
    DeletePod = _on_pods(pods_api.delete)
    GetPod = _on_pods(pods_api.get)
    ListPods = _on_pods(pods_api.list_pods)
    Logs = _on_pods(pods_api.logs_rpc)
    Exec = _on_pods(pods_api.exec_rpc)
    UpdateContainer = _on_pods(pods_api.update)
    Stats = _on_pods(observe.stats)
    Events = _on_pods(observe.events)
