"""Generic netlink: find a family and its multicast groups by name, and read a group's events.

Families get their message type (id) at registration; the controller (nlctrl, id 0x10) maps
names to ids and lists each family's multicast groups.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import AsyncIterator
from typing import NamedTuple

from init.net import netlink
from init.net.netlink import NetlinkDecodeError, NetlinkSocket

LOG = logging.getLogger("mvirt-one")

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved


class Family(NamedTuple):
    id: int
    groups: dict[str, int]  # multicast group name -> id


class Event(NamedTuple):
    cmd: int
    attrs: dict[int, bytes]


def pack(cmd: int, version: int, attrs: bytes = b"") -> bytes:
    return GENLMSGHDR.pack(cmd, version, 0) + attrs


def decode(msg: netlink.Message) -> Event:
    if len(msg.payload) < GENLMSGHDR.size:
        raise NetlinkDecodeError(f"generic netlink message of {len(msg.payload)} bytes")
    cmd = GENLMSGHDR.unpack_from(msg.payload)[0]
    return Event(cmd, netlink.attrs(msg.payload, GENLMSGHDR.size))


def decode_family(msg: netlink.Message) -> Family:
    fields = decode(msg).attrs
    if CTRL_ATTR_FAMILY_ID not in fields:
        raise NetlinkDecodeError("the controller's answer has no family id")
    groups: dict[str, int] = {}
    for _index, group in netlink.iter_attrs(fields.get(CTRL_ATTR_MCAST_GROUPS, b"")):
        group_fields = netlink.attrs(group)
        name, gid = group_fields.get(CTRL_ATTR_MCAST_GRP_NAME), group_fields.get(
            CTRL_ATTR_MCAST_GRP_ID)
        if name is not None and gid is not None:
            groups[netlink.as_str(name)] = netlink.as_u32(gid)
    return Family(netlink.as_u16(fields[CTRL_ATTR_FAMILY_ID]), groups)


async def resolve(nl: NetlinkSocket, name: str) -> Family:
    """The family registered as `name`; NetlinkError ENOENT if the kernel has none."""
    request = pack(CTRL_CMD_GETFAMILY, 1, netlink.attr_str(CTRL_ATTR_FAMILY_NAME, name))
    answer = await nl.request(GENL_ID_CTRL, netlink.NLM_F_REQUEST, request)
    if len(answer) != 1:
        raise NetlinkDecodeError(f"{len(answer)} messages in answer to a family query")
    return decode_family(answer[0])


class EventSocket:
    """A socket that has joined one multicast group of one family."""

    def __init__(self, nl: NetlinkSocket, family: Family) -> None:
        self.nl = nl
        self.family = family

    @classmethod
    async def open(cls, family_name: str, group: str) -> EventSocket:
        nl = NetlinkSocket(netlink.NETLINK_GENERIC)
        try:
            family = await resolve(nl, family_name)
            if group not in family.groups:
                raise LookupError(f"generic netlink family {family_name} has no multicast "
                                  f"group {group} (it has {sorted(family.groups)})")
            nl.join(family.groups[group])
        except BaseException:
            nl.close()
            raise
        return cls(nl, family)

    def close(self) -> None:
        self.nl.close()

    async def events(self) -> AsyncIterator[Event]:
        """The family's messages as they come, until cancelled; undecodable ones are skipped."""
        while True:
            try:
                messages = await self.nl.receive()
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                LOG.warning("generic netlink: events lost (receive buffer overrun)")
                continue
            except NetlinkDecodeError as e:
                LOG.warning("generic netlink: undecodable datagram ignored: %s", e)
                continue
            for msg in messages:
                if msg.type != self.family.id:
                    continue  # answers to the socket's own requests, or noise
                try:
                    yield decode(msg)
                except NetlinkDecodeError as e:
                    LOG.warning("generic netlink: undecodable event ignored: %s", e)
