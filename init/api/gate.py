"""Who may talk to the API, and how much of the init a client may hold.

The API has no authentication, so its door is the transport:
- over vsock only the host (CID 2) is served. A process in the guest (a container) that reaches
  the listener through a loopback transport, over CID 1 or the guest's own CID, is dropped at
  once (the kernel is also built without that transport: two locks on one door);
- the number of connections is bounded, and each connection may open a bounded number of
  concurrent streams (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS, which h2 enforces): every
  stream may hold a file (a log followed, an exec's pipes), and the init must keep descriptors
  for its own work.

grpclib builds one H2Protocol per accepted connection in `Server._protocol_factory`; this module
is the one place that reaches into that (grpclib 0.4.x): `GatedServer` wraps each protocol.
tests/unit/test_api_gate.py fails if grpclib stops calling the factory or changes the protocol.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from grpclib.protocol import H2Protocol
from grpclib.server import Server
from h2.settings import SettingCodes

LOG = logging.getLogger("mvirt-one")

HOST_CID = socket.VMADDR_CID_HOST  # 2
MAX_CONNECTIONS = 128
MAX_STREAMS_PER_CONNECTION = 64


def peer_allowed(family: int, peer: Any) -> bool:
    """A vsock peer must be the host; unix and TCP peers are checked by the socket's own
    permissions and address (0600 socket, loopback)."""
    if family != socket.AF_VSOCK:
        return True
    return isinstance(peer, tuple) and len(peer) == 2 and peer[0] == HOST_CID


class GatedServer(Server):
    """grpclib's Server that refuses peers `peer_allowed` refuses and connections past the cap."""

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS,
                 max_streams: int = MAX_STREAMS_PER_CONNECTION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.max_streams = max_streams
        self.open_connections = 0
        self.refused = 0

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        gated_made, gated_lost = protocol.connection_made, protocol.connection_lost
        counted = False

        def connection_made(transport: asyncio.Transport) -> None:
            nonlocal counted
            sock = transport.get_extra_info("socket")
            family = sock.family if sock is not None else socket.AF_UNSPEC
            peer = transport.get_extra_info("peername")
            if not peer_allowed(family, peer):
                self.refused += 1
                LOG.warning("API: connection from vsock peer %s refused: only the host (CID %d) "
                            "is served", peer, HOST_CID)
                transport.abort()
                return
            if self.open_connections >= self.max_connections:
                self.refused += 1
                LOG.warning("API: connection refused: %d connections open (the limit)",
                            self.open_connections)
                transport.abort()
                return
            counted = True
            self.open_connections += 1
            gated_made(transport)
            # h2 starts at 100 streams; ours applies once the client acknowledges it.
            protocol.connection._connection.update_settings(
                {SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
            protocol.connection.flush()

        def connection_lost(exc: BaseException | None) -> None:
            nonlocal counted
            if not counted:
                return  # refused: grpclib never saw it
            counted = False
            self.open_connections -= 1
            gated_lost(exc)

        protocol.connection_made = connection_made  # type: ignore[method-assign,assignment]
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol
