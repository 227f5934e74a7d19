"""Netlink: the message framing (nlmsghdr, attributes) and an asyncio request socket.

A request gets a sequence number and is answered by messages carrying it: a dump ends with
NLMSG_DONE, anything else with the ACK (NLMSG_ERROR with error 0) that every non-dump request
asks for. A kernel error becomes NetlinkError, an OSError with the kernel's errno (and its
extended-ACK message when it gives one). Bytes that do not frame as netlink raise
NetlinkDecodeError, and every request has a deadline: a missing answer is a TimeoutError, never
a hang. Formats are host-endian, as the kernel's are.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import logging
import os
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

LOG = logging.getLogger("mvirt-one")

NETLINK_ROUTE = 0
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10  # errors quote only the request's header, not its whole payload
NETLINK_EXT_ACK = 11  # errors may carry the kernel's reason as text

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the quoted request is only its header
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ACK attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
ATTR = struct.Struct("=HH")  # nlattr: length, type
ERRNO = struct.Struct("=i")
U16, U32 = struct.Struct("=H"), struct.Struct("=I")
TIMEOUT = 5.0  # the kernel answers in microseconds: this only bounds a broken exchange
RECV_SIZE = 65536  # a dump's datagrams stay under 32 KiB
DUMP_ATTEMPTS = 3  # a dump the kernel marks interrupted (tables changed meanwhile) is redone


class NetlinkError(OSError):
    """The kernel refused a request: errno is its error code."""

    def __init__(self, code: int, reason: str = "") -> None:
        text = os.strerror(code) + (f" ({reason})" if reason else "")
        super().__init__(code, text)


class NetlinkDecodeError(ValueError):
    """Bytes that are not the netlink messages or attributes they claim to be."""


class Message(NamedTuple):
    type: int
    flags: int
    seq: int
    payload: bytes


def align(n: int) -> int:
    return (n + 3) & ~3


def pack_message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(payload), msg_type, flags, seq, 0) + payload


def parse_messages(data: bytes) -> list[Message]:
    """Split one datagram into its messages."""
    out: list[Message] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            raise NetlinkDecodeError(f"{len(data) - offset} stray bytes after the messages")
        length, msg_type, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or length > len(data) - offset:
            raise NetlinkDecodeError(f"message of type {msg_type} claims {length} bytes, "
                                     f"{len(data) - offset} remain (truncated?)")
        out.append(Message(msg_type, flags, seq, data[offset + HEADER.size:offset + length]))
        offset += align(length)
    return out


def attr(attr_type: int, value: bytes) -> bytes:
    """One attribute, padded to the 4-byte boundary that the next one starts on."""
    length = ATTR.size + len(value)
    return ATTR.pack(length, attr_type) + value + bytes(align(length) - length)


def attr_u32(attr_type: int, value: int) -> bytes:
    return attr(attr_type, U32.pack(value))


def attr_str(attr_type: int, value: str) -> bytes:
    return attr(attr_type, value.encode() + b"\0")


def iter_attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each attribute from `offset` on; a nested one's value is again a list."""
    while offset < len(data):
        if len(data) - offset < ATTR.size:
            raise NetlinkDecodeError(f"{len(data) - offset} stray bytes after the attributes")
        length, attr_type = ATTR.unpack_from(data, offset)
        if length < ATTR.size or length > len(data) - offset:
            raise NetlinkDecodeError(f"attribute {attr_type & NLA_TYPE_MASK} claims {length} "
                                     f"bytes, {len(data) - offset} remain")
        yield attr_type & NLA_TYPE_MASK, data[offset + ATTR.size:offset + length]
        offset += align(length)


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes by type (the last of a repeated one)."""
    return dict(iter_attrs(data, offset))


def as_u16(value: bytes) -> int:
    if len(value) != U16.size:
        raise NetlinkDecodeError(f"a u16 attribute of {len(value)} bytes")
    return int(U16.unpack(value)[0])


def as_u32(value: bytes) -> int:
    if len(value) != U32.size:
        raise NetlinkDecodeError(f"a u32 attribute of {len(value)} bytes")
    return int(U32.unpack(value)[0])


def as_str(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def error_of(msg: Message) -> NetlinkError | None:
    """The error an NLMSG_ERROR carries, None for an ACK (error 0)."""
    if len(msg.payload) < ERRNO.size + HEADER.size:
        raise NetlinkDecodeError(f"NLMSG_ERROR of {len(msg.payload)} bytes")
    code = -ERRNO.unpack_from(msg.payload)[0]
    if code == 0:
        return None
    reason = ""
    if msg.flags & NLM_F_ACK_TLVS:
        quoted = HEADER.unpack_from(msg.payload, ERRNO.size)[0]
        start = ERRNO.size + (HEADER.size if msg.flags & NLM_F_CAPPED else align(quoted))
        try:
            text = attrs(msg.payload, start).get(NLMSGERR_ATTR_MSG)
            reason = as_str(text) if text else ""
        except NetlinkDecodeError:
            pass  # the reason is a courtesy: the errno alone is the answer
    return NetlinkError(code if code > 0 else errno_mod.EPROTO, reason)


class NetlinkSocket:
    """One netlink socket on the running asyncio loop."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK,
                                  socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  protocol)
        try:
            self.sock.bind((0, 0))
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    async def __aenter__(self) -> NetlinkSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def join(self, group: int) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    async def receive(self) -> list[Message]:
        """The messages of the next datagram (for multicast listeners)."""
        data = await asyncio.get_running_loop().sock_recv(self.sock, RECV_SIZE)
        return parse_messages(data)

    async def request(self, msg_type: int, flags: int, payload: bytes, *,
                      timeout: float = TIMEOUT) -> list[Message]:
        """Send one request and return its answer: a dump's messages, or the reply messages
        that came before the ACK (none for most requests)."""
        for _ in range(DUMP_ATTEMPTS):
            answer, interrupted = await self._exchange(msg_type, flags, payload, timeout)
            if not interrupted:
                break
            LOG.debug("netlink: dump of type %d interrupted by a change; redone", msg_type)
        return answer

    async def _exchange(self, msg_type: int, flags: int, payload: bytes,
                        timeout: float) -> tuple[list[Message], bool]:
        loop = asyncio.get_running_loop()
        self._seq = self._seq % 0xFFFFFFFF + 1
        seq = self._seq
        if flags & NLM_F_DUMP != NLM_F_DUMP:
            flags |= NLM_F_ACK
        out: list[Message] = []
        interrupted = False
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_sendall(self.sock, pack_message(msg_type, flags, seq, payload))
                while True:
                    for msg in parse_messages(await loop.sock_recv(self.sock, RECV_SIZE)):
                        if msg.seq != seq:
                            continue  # the answer to an earlier request that timed out
                        interrupted |= bool(msg.flags & NLM_F_DUMP_INTR)
                        if msg.type == NLMSG_ERROR:
                            if (error := error_of(msg)) is not None:
                                raise error
                            return out, interrupted
                        if msg.type == NLMSG_DONE:
                            if len(msg.payload) >= ERRNO.size and \
                                    (code := ERRNO.unpack_from(msg.payload)[0]) < 0:
                                raise NetlinkError(-code)
                            return out, interrupted
                        if msg.type == NLMSG_OVERRUN:
                            raise NetlinkDecodeError("the kernel reports lost data (overrun)")
                        out.append(msg)
        except TimeoutError:
            raise TimeoutError(f"netlink: no answer to message type {msg_type} within "
                               f"{timeout:g} s") from None
