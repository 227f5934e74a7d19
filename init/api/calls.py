"""What every RPC handler needs of its stream."""

from __future__ import annotations

from typing import Any

from grpclib import GRPCError, Status
from grpclib.server import Stream


async def request(stream: Stream[Any, Any]) -> Any:
    """The one request message of a unary or server-streaming call: INVALID_ARGUMENT without
    one (a check, not an assert: the frozen init runs with -OO, without asserts)."""
    message = await stream.recv_message()
    if message is None:
        raise GRPCError(Status.INVALID_ARGUMENT, "no request message")
    return message
