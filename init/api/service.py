"""OneService: the handlers behind proto/one.proto's RPCs.

Imported only when the API starts (grpclib, h2 and protobuf are costly at boot). Every handler is
wrapped by `guard`, so an unexpected exception in one call becomes INTERNAL for that call, with a
traceback in the log, and never reaches the connection, the server or the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import h2.exceptions
from grpclib import GRPCError, Status
from grpclib.const import Handler
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream

from init.api import images as images_api
from init.api import netinfo
from init.api.pods import PodSupervisor
from init.services.pod import rpc as pod_rpc
from init.services.pod.service import PodService
from oneproto import one_grpc, one_pb2

if TYPE_CHECKING:
    from init.services.image import ImageService

LOG = logging.getLogger("mvirt-one")

# The shutdown callback: (reason, grace seconds for the containers).
ShutdownRequester = Callable[[str, float], None]
NetworkReader = Callable[[], Awaitable[list[netinfo.InterfaceState]]]
StreamHandler = Callable[[Stream[Any, Any]], Awaitable[None]]


def guard(method: str, func: StreamHandler) -> StreamHandler:
    """Run one RPC; an unexpected exception is logged and answered as INTERNAL."""

    async def guarded(stream: Stream[Any, Any]) -> None:
        try:
            await func(stream)
        except GRPCError:
            raise  # a deliberate status: grpclib sends it as is
        except (StreamTerminatedError, h2.exceptions.StreamClosedError):
            # The client went away (reset or disconnect): nobody to answer, nothing is wrong here.
            LOG.debug("API %s: client gone", method)
            raise
        except Exception as e:
            LOG.error("API %s failed: %s: %s", method, type(e).__name__, e, exc_info=True)
            raise GRPCError(Status.INTERNAL,
                            f"{method}: internal error in the init ({type(e).__name__}: {e})"
                            ) from e

    return guarded


class OneService(one_grpc.OneServiceBase):
    def __init__(self, *, version: str, pods: PodSupervisor, request_shutdown: ShutdownRequester,
                 default_grace: float, network: NetworkReader = netinfo.read,
                 images: ImageService | None = None,
                 image_in_use: images_api.InUse = lambda digest: False) -> None:
        self._version = version
        self._images = images
        # The pod service (issue 6) says which images its containers use; until then none.
        self._image_in_use = image_in_use
        self._pods = pods
        # The pod RPCs need the real service; a stand-in supervisor (tests) answers UNAVAILABLE.
        self._pod_rpcs = pods if isinstance(pods, PodService) else None
        if self._pod_rpcs is not None:
            self._image_in_use = self._pod_rpcs.image_in_use
        self._request_shutdown = request_shutdown
        self._default_grace = default_grace
        self._network = network

    def __mapping__(self) -> dict[str, Handler]:
        return {path: handler._replace(func=guard(path.rsplit("/", 1)[-1], handler.func))
                for path, handler in super().__mapping__().items()}

    # --- this RPCs -------------------------------------------------------------------

    async def Health(self, stream: Stream[one_pb2.Empty, one_pb2.HealthResponse]) -> None:
        await stream.recv_message()
        counts = self._pods.running_counts()
        await stream.send_message(one_pb2.HealthResponse(
            healthy=True, version=self._version,
            running_pods=counts.pods, running_containers=counts.containers))

    async def GetNetworkInfo(self, stream: Stream[one_pb2.Empty, one_pb2.NetworkInfo]) -> None:
        await stream.recv_message()
        interfaces = await self._network()
        await stream.send_message(one_pb2.NetworkInfo(interfaces=[
            one_pb2.InterfaceInfo(
                name=i.name, mac_address=i.mac_address,
                ipv4_address=i.ipv4_address, ipv4_netmask=i.ipv4_netmask,
                ipv4_gateway=i.ipv4_gateway, ipv4_dns=i.ipv4_dns,
                ipv6_address=i.ipv6_address, ipv6_gateway=i.ipv6_gateway, ipv6_dns=i.ipv6_dns,
                delegated_prefix=i.delegated_prefix)
            for i in interfaces]))

    async def Shutdown(self, stream: Stream[one_pb2.ShutdownRequest, one_pb2.Empty]) -> None:
        request = await stream.recv_message()
        grace = float(request.timeout_seconds) if request and request.timeout_seconds \
            else self._default_grace
        # Answer completely (message and status) before anything goes down: the way down
        # closes the API server, and the caller must not see a broken call.
        await stream.send_message(one_pb2.Empty())
        await stream.send_trailing_metadata()
        LOG.info("shutdown requested over the API (grace %.0f s)", grace)
        self._request_shutdown("api", grace)

    # --- images (init/api/images.py) ----------------------------------------------------------

    async def PullImage(self, stream: Stream[one_pb2.PullImageRequest,
                                             one_pb2.PullImageProgress]) -> None:
        if self._images is None:
            raise images_api.unavailable()
        await images_api.pull(self._images, stream)

    async def ListImages(self, stream: Stream[one_pb2.Empty, one_pb2.ListImagesResponse]) -> None:
        if self._images is None:
            raise images_api.unavailable()
        await images_api.list_images(self._images, stream)

    async def RemoveImage(self, stream: Stream[one_pb2.RemoveImageRequest,
                                               one_pb2.RemoveImageResponse]) -> None:
        if self._images is None:
            raise images_api.unavailable()
        await images_api.remove(self._images, self._image_in_use, stream)

    # --- pods, logs and exec (init/services/pod/rpc.py) --------------------------------------

    def _pod_service(self) -> PodService:
        if self._pod_rpcs is None:
            raise GRPCError(Status.UNAVAILABLE, "the pod service is not running in this init")
        return self._pod_rpcs

    async def CreatePod(self, stream: Stream[one_pb2.CreatePodRequest, one_pb2.Pod]) -> None:
        await pod_rpc.create(self._pod_service(), stream)

    async def StartPod(self, stream: Stream[one_pb2.StartPodRequest, one_pb2.Pod]) -> None:
        await pod_rpc.start(self._pod_service(), stream)

    async def StopPod(self, stream: Stream[one_pb2.StopPodRequest, one_pb2.Pod]) -> None:
        await pod_rpc.stop(self._pod_service(), stream)

    async def DeletePod(self, stream: Stream[one_pb2.DeletePodRequest, one_pb2.Empty]) -> None:
        await pod_rpc.delete(self._pod_service(), stream)

    async def GetPod(self, stream: Stream[one_pb2.GetPodRequest, one_pb2.Pod]) -> None:
        await pod_rpc.get(self._pod_service(), stream)

    async def ListPods(self, stream: Stream[one_pb2.Empty, one_pb2.ListPodsResponse]) -> None:
        await pod_rpc.list_pods(self._pod_service(), stream)

    async def Logs(self, stream: Stream[one_pb2.LogsRequest, one_pb2.LogsResponse]) -> None:
        await pod_rpc.logs_rpc(self._pod_service(), stream)

    async def Exec(self, stream: Stream[one_pb2.ExecInput, one_pb2.ExecOutput]) -> None:
        await pod_rpc.exec_rpc(self._pod_service(), stream)
