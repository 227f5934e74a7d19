"""Test doubles shared by the onectl tests (this module holds no tests itself).

- `FakeInit`: a grpclib OneService in a thread of its own, on a unix socket: the shape of the real
  init's server (grpclib), with answers a test controls.
- `FakeHybridVsock`: a hybrid-vsock socket as cloud-hypervisor/vhost-device-vsock expose it: reads
  `CONNECT <port>\\n`, answers per the test's script, then relays to a backend unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from oneproto import one_pb2
from oneproto.one_grpc import OneServiceBase

Reply = Literal["ok", "reset", "close", "garbled", "silent"]


class FakeInitService(OneServiceBase):
    def __init__(self) -> None:
        self.healthy = True
        self.error: tuple[Status, str] | None = None  # answer every call with this
        self.health_fails = True  # Health too
        self.shutdowns: list[int] = []
        self.health_calls = 0

    def _maybe_fail(self) -> None:
        if self.error is not None:
            raise GRPCError(*self.error)

    async def Health(self, stream: Stream[one_pb2.Empty, one_pb2.HealthResponse]) -> None:
        await stream.recv_message()
        self.health_calls += 1
        if self.health_fails:
            self._maybe_fail()
        await stream.send_message(one_pb2.HealthResponse(
            healthy=self.healthy, version="0.0.0-fake", running_pods=0, running_containers=0))

    async def GetNetworkInfo(self, stream: Stream[one_pb2.Empty, one_pb2.NetworkInfo]) -> None:
        await stream.recv_message()
        self._maybe_fail()
        await stream.send_message(one_pb2.NetworkInfo(interfaces=[
            one_pb2.InterfaceInfo(name="lo", mac_address="00:00:00:00:00:00",
                                  ipv4_address="127.0.0.1", ipv4_netmask="255.0.0.0",
                                  ipv6_address="::1"),
            one_pb2.InterfaceInfo(name="eth0", mac_address="52:54:00:12:34:56",
                                  ipv4_address="10.0.2.15", ipv4_netmask="24",
                                  ipv4_gateway="10.0.2.2", ipv4_dns=["10.0.2.3"]),
        ]))

    async def Shutdown(self, stream: Stream[one_pb2.ShutdownRequest, one_pb2.Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self._maybe_fail()
        self.shutdowns.append(request.timeout_seconds)
        await stream.send_message(one_pb2.Empty())

    async def _unimplemented(self, stream: Stream[object, object]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "not in this fake")

    CreatePod = StartPod = StopPod = DeletePod = GetPod = ListPods = _unimplemented  # type: ignore[assignment]
    Logs = Exec = _unimplemented  # type: ignore[assignment]
    PullImage = ListImages = RemoveImage = UpdateContainer = _unimplemented  # type: ignore[assignment]
    Stats = Events = _unimplemented  # type: ignore[assignment]


class FakeInit:
    """The fake service served by grpclib on `path`, in a thread with its own event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.service = FakeInitService()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self) -> None:
        # Created inside the loop's thread: grpclib binds the server to the running loop.
        self._server = Server([self.service])
        await self._server.start(path=str(self.path))

    def __enter__(self) -> FakeInit:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _splice(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()


class FakeHybridVsock:
    """A hybrid-vsock unix socket. `replies` scripts the answers to successive CONNECTs (the last
    one repeats): "ok" (OK, then relay to `backend`, or echo without one, with `greeting` sent in
    the same write as OK), "reset" (close without reading: ECONNRESET), "close" (read CONNECT, then
    close: EOF), "garbled" (a non-protocol reply), "silent" (read, never answer)."""

    def __init__(self, path: Path, *, backend: Path | None = None,
                 replies: list[Reply] | None = None, greeting: bytes = b"") -> None:
        self.path = path
        self.backend = backend
        self.replies: list[Reply] = replies or ["ok"]
        self.greeting = greeting
        self.requests: list[bytes] = []  # the CONNECT lines received
        self.connections = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(16)
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            reply = self.replies[min(self.connections, len(self.replies) - 1)]
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, reply), daemon=True).start()

    def _read_line(self, conn: socket.socket) -> bytes:
        line = b""
        while not line.endswith(b"\n") and len(line) < 100:
            chunk = conn.recv(1)
            if not chunk:
                break
            line += chunk
        self.requests.append(line)
        return line

    def _serve(self, conn: socket.socket, reply: Reply) -> None:
        with conn:
            if reply == "reset":
                # Closing with CONNECT unread in our queue makes the peer's read fail with
                # ECONNRESET (or its write with EPIPE if it comes later), as a hypervisor does.
                threading.Event().wait(0.01)
                return
            line = self._read_line(conn)
            if reply == "close":
                return
            if reply == "garbled":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                return
            if reply == "silent":
                threading.Event().wait(30)
                return
            if not line.startswith(b"CONNECT ") or not line.endswith(b"\n"):
                return
            conn.sendall(b"OK 1073741824\n" + self.greeting)
            if self.backend is None:
                with contextlib.suppress(OSError):
                    while data := conn.recv(65536):
                        conn.sendall(data)
                return
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as back:
                back.connect(str(self.backend))
                _splice(conn, back)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeHybridVsock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def fake_init_behind_vsock(tmp: Path, replies: list[Reply] | None = None
                           ) -> Iterator[tuple[FakeInit, FakeHybridVsock]]:
    with FakeInit(tmp / "init.sock") as init, \
            FakeHybridVsock(tmp / "vm.vsock", backend=init.path, replies=replies) as vsock:
        yield init, vsock
