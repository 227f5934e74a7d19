"""What a request may be: one message at most 4 MiB (grpc's default limit), uncompressed, and
decodable; anything else is answered with its status before (or instead of) being read.

grpclib reads a whole message of whatever length its 5-byte prefix announces into memory, and
has no limit to set. Its server streams read messages through `grpclib.server.recv_message`:
`install` puts a bounded reader there, which looks at the prefix first.
"""

from __future__ import annotations

import struct
from typing import Any

MAX_MESSAGE = 4 << 20  # bytes


async def recv_message(stream: Any, codec: Any, message_type: Any) -> Any:
    """grpclib.stream.recv_message, bounded: None at the end of the stream, else one message."""
    from grpclib import GRPCError, Status

    prefix = await stream.recv_data(5)
    if not prefix:
        return None
    if len(prefix) < 5:
        raise GRPCError(Status.INVALID_ARGUMENT, "the request ends inside a message prefix")
    compressed, length = struct.unpack(">?I", prefix)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if length > MAX_MESSAGE:
        raise GRPCError(Status.RESOURCE_EXHAUSTED,
                        f"request message of {length} bytes is larger than the limit of "
                        f"{MAX_MESSAGE} bytes")
    data = await stream.recv_data(length)
    if len(data) != length:
        raise GRPCError(Status.INVALID_ARGUMENT, "the request ends inside a message")
    try:
        return codec.decode(data, message_type)
    except Exception as e:
        raise GRPCError(Status.INVALID_ARGUMENT,
                        f"request message cannot be decoded as {message_type.__name__}: {e}"
                        ) from None


def install() -> None:
    """Make every grpclib server stream read its messages with `recv_message`."""
    import grpclib.server

    grpclib.server.recv_message = recv_message  # type: ignore[attr-defined]
