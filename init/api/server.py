"""Start and stop the gRPC server (grpclib) on the pre-bound listener.

grpclib and the generated messages are imported here, inside `start`, not at module level: the
boot phases before the API should not wait for h2 to load.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from init import openssl
from init.api import listeners

if TYPE_CHECKING:
    from grpclib.server import Server

    from init.api.service import NetworkReader, OneService, ShutdownRequester
    from init.services.image import ImageService
    from init.services.pod.service import PodService

LOG = logging.getLogger("mvirt-one")


class ApiServer:
    """The running API: one listener, one grpclib Server behind the gate (gate.py)."""

    def __init__(self, server: Server, service: OneService,
                 listener: listeners.Listener) -> None:
        self._server = server
        self._service = service
        self.listener = listener

    @property
    def address(self) -> str:
        return self.listener.address

    @classmethod
    async def start(cls, listen: str, *, version: str, pods: PodService | None,
                    request_shutdown: ShutdownRequester, default_grace: float,
                    network: NetworkReader | None = None,
                    images: ImageService | None = None) -> ApiServer:
        """Bind `listen` and serve; raises listeners.ListenError if the address is unusable."""
        listener = listeners.bind(listen)
        try:
            # What these imports reach of OpenSSL waits for the first pull (init/openssl.py).
            with openssl.hidden():
                from init.api import limits
                from init.api.codec import WireCodec
                from init.api.gate import GatedServer
                from init.api.service import OneService
                from init.net import netinfo

            # The network manager's view (live netlink + lease data) in PID 1 mode; local mode
            # has no manager and reads the live state alone.
            service = OneService(version=version, pods=pods, request_shutdown=request_shutdown,
                                 default_grace=default_grace, network=network or netinfo.read,
                                 images=images)
            limits.install()
            server = GatedServer([service], codec=WireCodec())
            await server.start(sock=listener.sock)
        except BaseException:
            listener.close()
            raise
        LOG.info("API listening on %s", listener.address)
        return cls(server, service, listener)

    async def stop(self, timeout: float = 2.0) -> None:
        """Let the calls that end by themselves at shutdown (cancelled pulls) answer, then stop
        accepting, cancel running calls, wait for them a bounded time, close the socket."""
        settling = self._service.settling()
        if settling:
            await asyncio.wait(settling, timeout=timeout)
        self._server.close()
        try:
            # Handlers get their CancelledError and a moment to end; a stuck one does not hold
            # the way down.
            await asyncio.wait_for(self._server.wait_closed(), timeout)
        except TimeoutError:
            LOG.warning("API calls still running %.0f s after close: abandoned", timeout)
        finally:
            self.listener.close()
