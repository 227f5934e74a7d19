"""The API's door (init/api/gate.py): only the host over vsock, a bounded number of connections,
a bounded number of streams on each. A real grpclib server on a unix socket, and its protocol
factory given a vsock peer as a guest process (a container) would appear."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import grpclib
import h2.config
import h2.connection
import h2.events
from h2.settings import SettingCodes

from init.api import gate
from init.api.codec import WireCodec
from init.api.service import OneService


def test_only_the_host_cid_is_a_vsock_peer() -> None:
    assert gate.peer_allowed(socket.AF_VSOCK, (2, 51234))
    for cid in (0, 1, 3, 4, 0xFFFFFFFF):  # the hypervisor, loopback, the guest's own CIDs
        assert not gate.peer_allowed(socket.AF_VSOCK, (cid, 51234))
    assert not gate.peer_allowed(socket.AF_VSOCK, None)
    assert gate.peer_allowed(socket.AF_UNIX, "")  # a 0600 socket: its permissions decide


class FakeSocket:
    def __init__(self, family: int) -> None:
        self.family = family


class FakeTransport(asyncio.Transport):
    """What asyncio hands a protocol for an accepted connection, from a given peer."""

    def __init__(self, family: int, peer: Any) -> None:
        super().__init__()
        self.extra = {"socket": FakeSocket(family), "peername": peer}
        self.aborted = False
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def abort(self) -> None:
        self.aborted = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.aborted

    def close(self) -> None:
        self.aborted = True


def _service() -> OneService:
    async def network() -> list[Any]:
        return []

    return OneService(version="test", pods=None, request_shutdown=lambda reason, grace: None,
                      default_grace=1.0, network=network)


def test_a_guest_vsock_peer_is_dropped_and_the_host_is_served() -> None:
    asyncio.run(_guest_and_host())


async def _guest_and_host() -> None:
    server = gate.GatedServer([_service()], codec=WireCodec())
    for cid in (1, 3):
        guest = FakeTransport(socket.AF_VSOCK, (cid, 40000))
        protocol = server._protocol_factory()
        protocol.connection_made(guest)
        assert guest.aborted and guest.written == b"", cid  # not a byte of HTTP/2 to it
        protocol.connection_lost(None)
    assert server.refused == 2 and server.open_connections == 0
    host = FakeTransport(socket.AF_VSOCK, (2, 40000))
    protocol = server._protocol_factory()
    protocol.connection_made(host)
    assert not host.aborted and host.written  # the server's preface: SETTINGS
    assert server.open_connections == 1
    protocol.connection_lost(None)
    assert server.open_connections == 0


def _settings(sock: socket.socket) -> dict[int, int]:
    """The server's settings as a client sees them after its first frames."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sock.settimeout(10)
    changed: dict[int, int] = {}
    while SettingCodes.MAX_CONCURRENT_STREAMS not in changed or \
            changed[SettingCodes.MAX_CONCURRENT_STREAMS] == 100:
        data = sock.recv(65536)
        assert data, "closed before its settings"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                changed.update({k: v.new_value for k, v in event.changed_settings.items()})
        sock.sendall(conn.data_to_send())
    return changed


def test_connections_and_streams_are_bounded(tmp_path: Path) -> None:
    asyncio.run(_bounded(tmp_path))


async def _bounded(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    server = gate.GatedServer([_service()], codec=WireCodec(), max_connections=2, max_streams=7)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    await server.start(sock=listener)
    try:
        def clients() -> None:
            first, second, third = (socket.socket(socket.AF_UNIX) for _ in range(3))
            with first, second, third:
                first.connect(str(path))
                assert _settings(first)[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
                second.connect(str(path))
                _settings(second)
                third.connect(str(path))
                third.settimeout(10)
                assert third.recv(100) == b""  # past the cap: closed, nothing sent
            # The two served ones gone, a new client is served again.
            with socket.socket(socket.AF_UNIX) as again:
                again.connect(str(path))
                assert _settings(again)[SettingCodes.MAX_CONCURRENT_STREAMS] == 7

        await asyncio.to_thread(clients)
        assert server.refused == 1
    finally:
        server.close()
        await server.wait_closed()


def test_grpclib_is_the_version_the_gate_was_written_for() -> None:
    # gate.GatedServer wraps grpclib's private Server._protocol_factory and the h2 connection
    # inside grpclib's Connection; the tests above fail if either changes shape.
    assert grpclib.__version__.startswith("0.4."), (
        f"grpclib {grpclib.__version__}: check init/api/gate.py against it")


