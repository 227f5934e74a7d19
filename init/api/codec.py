"""grpclib's codec for the guest: the API's messages through init/api/wire.py, not protobuf.

grpclib's own ProtoCodec calls SerializeToString/FromString, which the plain generated classes
do not have; this one has its checks and its content type (`application/grpc+proto`).
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.base import CodecBase

from init.api import wire


class WireCodec(CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        return wire.encode(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return wire.decode(data, message_type)
