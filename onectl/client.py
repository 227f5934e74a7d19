"""A gRPC connection to an init, whatever the transport, and errors turned into exit codes.

grpcio is the client library for every transport: unix and TCP it dials itself, hybrid vsock goes
through the in-process relay (relay.py says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

# grpcio's C core logs to stderr on its own; its lines would break the one-line error promise.
# Whoever wants them sets GRPC_VERBOSITY themselves.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc

from onectl.errors import ConnectError, Exit, OnectlError
from onectl.relay import HybridVsockRelay
from onectl.settings import Settings
from oneproto import one_pb2, one_pb2_grpc

T = TypeVar("T")

# How long a server that is up takes to answer Health, asked after a call failed UNAVAILABLE.
PROBE_TIMEOUT = 2.0

_CHANNEL_OPTIONS = [
    # Never route through an http_proxy from the environment: the init is local or in our VM.
    ("grpc.enable_http_proxy", 0),
    # Most answers are small, but a log chunk or a long pod list can be large.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class Client:
    """An open channel and its OneService stub. Use as a context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay: HybridVsockRelay | None = None
        address = settings.address
        if address.kind == "vsock-uds":
            assert address.path is not None
            self.relay = HybridVsockRelay(address.path, address.port,
                                          connect_timeout=settings.connect_timeout)
            target = self.relay.target
        elif address.kind == "unix":
            target = f"unix:{address.path}"
        else:
            host = f"[{address.host}]" if ":" in address.host else address.host
            target = f"{host}:{address.port}"
        options = list(_CHANNEL_OPTIONS)
        if self.relay is not None:
            # grpcio gives a connection attempt max(20 s, this) to deliver the server's SETTINGS;
            # through the relay that includes waiting for a booting guest to listen.
            options.append(("grpc.min_reconnect_backoff_ms",
                            int((settings.connect_timeout + 5) * 1000)))
        self.channel = grpc.insecure_channel(target, options=options)
        # The generated grpcio stub is untyped; its methods are typed by the .pyi of one_pb2.
        self.stub = one_pb2_grpc.OneServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def call(self, method: Callable[..., T], request: object, *,
             timeout: float | None = None) -> T:
        """Call a unary RPC; gRPC errors become OnectlError with the documented exit code."""
        deadline = timeout or self.settings.timeout
        if self.relay is not None and self.relay.handshakes == 0:
            deadline += self.settings.connect_timeout  # the wait for the guest comes first
        try:
            return method(request, timeout=deadline)
        except grpc.RpcError as e:
            raise self.translate(e) from None

    def stream(self, method: Callable[..., Iterable[T]], request: object, *,
               timeout: float | None) -> Iterator[T]:
        """The answers of a server-streaming RPC (`timeout` None: no deadline); gRPC errors
        become OnectlError as in call()."""
        try:
            yield from method(request, timeout=timeout)
        except grpc.RpcError as e:
            raise self.translate(e) from None

    def translate(self, error: grpc.RpcError) -> OnectlError:
        """One readable line and an exit code for a failed call."""
        code: grpc.StatusCode = error.code()
        details: str = error.details() or ""
        address = self.settings.address
        relay_error = self.relay.last_error if self.relay else None
        never_connected = self.relay is not None and self.relay.handshakes == 0
        if relay_error is not None and never_connected and code in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            # grpcio only saw a closed stream; the relay knows what really went wrong.
            return ConnectError(f"cannot connect to {address}: {relay_error}")
        if code == grpc.StatusCode.UNAVAILABLE and self._answers():
            # The server is up and sent the status itself: what is unavailable is something it
            # needs (a registry it pulls from), not the server.
            return OnectlError(f"{address}: {code.name}: {details}", Exit.SERVER_ERROR)
        if code == grpc.StatusCode.UNAVAILABLE:
            # grpcio's wording; what follows "last error:" is the useful part.
            details = details.removeprefix("failed to connect to all addresses; last error: ")
            return ConnectError(f"cannot connect to {address}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and never_connected:
            return ConnectError(f"cannot connect to {address}: no answer within "
                                f"{self.settings.timeout:g}s")
        return OnectlError(f"{address}: {code.name}: {details}", Exit.SERVER_ERROR)

    def _answers(self) -> bool:
        """Whether the server answers Health now. grpcio reports an UNAVAILABLE the server sent
        as it does a connection it could not make or lost: neither its error text nor its
        metadata tell them apart."""
        try:
            self.stub.Health(one_pb2.Empty(), timeout=PROBE_TIMEOUT)
        except grpc.RpcError as e:
            return e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        return True

    def close(self) -> None:
        self.channel.close()
        if self.relay is not None:
            self.relay.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
