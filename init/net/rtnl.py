"""Route netlink: the link, address and route messages the network configuration speaks.

Replies decode into flat mappings, header fields and attributes side by side under the names
the kernel headers use ("index", "flags", "IFLA_IFNAME", "RTA_GATEWAY"...); only the attributes
listed here are decoded, the rest are skipped. Requests are what `ip` would send: replace =
create or update, delete = match on what is given.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

from init.net import netlink
from init.net.netlink import NetlinkDecodeError, NetlinkSocket, attr, attr_u32

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMGRP_LINK = 1

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO = 1, 3, 4, 18
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1
RTNH_F_ONLINK = 0x4

IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type, flags
CACHEINFO = struct.Struct("=IIII")  # preferred, valid, created, updated
RTNEXTHOP = struct.Struct("=HBBi")  # length, flags, hops, ifindex

Msg = dict[str, Any]
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _ip(value: bytes) -> str:
    if len(value) == 4:
        return socket.inet_ntop(socket.AF_INET, value)
    if len(value) == 16:
        return socket.inet_ntop(socket.AF_INET6, value)
    raise NetlinkDecodeError(f"an IP address attribute of {len(value)} bytes")


def _mac(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def _linkinfo(value: bytes) -> Msg:
    kind = netlink.attrs(value).get(IFLA_INFO_KIND)
    return {} if kind is None else {"IFLA_INFO_KIND": netlink.as_str(kind)}


def _multipath(value: bytes) -> list[Msg]:
    hops: list[Msg] = []
    offset = 0
    while offset < len(value):
        if len(value) - offset < RTNEXTHOP.size:
            raise NetlinkDecodeError("a truncated RTA_MULTIPATH next hop")
        length, flags, count, oif = RTNEXTHOP.unpack_from(value, offset)
        if length < RTNEXTHOP.size or length > len(value) - offset:
            raise NetlinkDecodeError(f"an RTA_MULTIPATH next hop claims {length} bytes")
        hop: Msg = {"flags": flags, "hops": count, "oif": oif}
        gateway = netlink.attrs(value[offset + RTNEXTHOP.size:offset + length]).get(RTA_GATEWAY)
        if gateway is not None:
            hop["RTA_GATEWAY"] = _ip(gateway)
        hops.append(hop)
        offset += netlink.align(length)
    return hops


Decoders = dict[int, tuple[str, Callable[[bytes], Any]]]
LINK_ATTRS: Decoders = {IFLA_ADDRESS: ("IFLA_ADDRESS", _mac),
                        IFLA_IFNAME: ("IFLA_IFNAME", netlink.as_str),
                        IFLA_MTU: ("IFLA_MTU", netlink.as_u32),
                        IFLA_LINKINFO: ("IFLA_LINKINFO", _linkinfo)}
ADDR_ATTRS: Decoders = {IFA_ADDRESS: ("IFA_ADDRESS", _ip), IFA_LOCAL: ("IFA_LOCAL", _ip),
                        IFA_LABEL: ("IFA_LABEL", netlink.as_str),
                        IFA_BROADCAST: ("IFA_BROADCAST", _ip),
                        IFA_FLAGS: ("IFA_FLAGS", netlink.as_u32)}
ROUTE_ATTRS: Decoders = {RTA_DST: ("RTA_DST", _ip), RTA_OIF: ("RTA_OIF", netlink.as_u32),
                         RTA_GATEWAY: ("RTA_GATEWAY", _ip),
                         RTA_PRIORITY: ("RTA_PRIORITY", netlink.as_u32),
                         RTA_MULTIPATH: ("RTA_MULTIPATH", _multipath),
                         RTA_TABLE: ("RTA_TABLE", netlink.as_u32)}


def _decode(msg: netlink.Message, expected: int, header: struct.Struct, fields: tuple[str, ...],
            decoders: Decoders) -> Msg:
    if msg.type != expected:
        raise NetlinkDecodeError(f"message type {msg.type} where {expected} was expected")
    if len(msg.payload) < header.size:
        raise NetlinkDecodeError(f"message type {msg.type} of {len(msg.payload)} bytes is "
                                 f"shorter than its {header.size}-byte header")
    out: Msg = dict(zip(fields, header.unpack_from(msg.payload), strict=True))
    for attr_type, value in netlink.iter_attrs(msg.payload, netlink.align(header.size)):
        if (decoder := decoders.get(attr_type)) is not None:
            out[decoder[0]] = decoder[1](value)
    return out


def decode_link(msg: netlink.Message) -> Msg:
    return _decode(msg, RTM_NEWLINK, IFINFOMSG, ("family", "ifi_type", "index", "flags",
                                                  "change"), LINK_ATTRS)


def decode_address(msg: netlink.Message) -> Msg:
    return _decode(msg, RTM_NEWADDR, IFADDRMSG, ("family", "prefixlen", "flags", "scope",
                                                  "index"), ADDR_ATTRS)


def decode_route(msg: netlink.Message) -> Msg:
    return _decode(msg, RTM_NEWROUTE, RTMSG, ("family", "dst_len", "src_len", "tos", "table",
                                               "proto", "scope", "type", "flags"), ROUTE_ATTRS)


def open_socket() -> NetlinkSocket:
    return NetlinkSocket(netlink.NETLINK_ROUTE)


DUMP = netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
REPLACE = netlink.NLM_F_REQUEST | netlink.NLM_F_REPLACE | netlink.NLM_F_CREATE


async def dump_links(nl: NetlinkSocket) -> list[Msg]:
    answer = await nl.request(RTM_GETLINK, DUMP, IFINFOMSG.pack(0, 0, 0, 0, 0))
    return [decode_link(m) for m in answer]


async def get_link(nl: NetlinkSocket, index: int = 0, name: str | None = None) -> Msg:
    """One link by index or by name; NetlinkError ENODEV if there is none."""
    payload = IFINFOMSG.pack(0, 0, index, 0, 0)
    if name is not None:
        payload += netlink.attr_str(IFLA_IFNAME, name)
    answer = await nl.request(RTM_GETLINK, netlink.NLM_F_REQUEST, payload)
    if len(answer) != 1:
        raise NetlinkDecodeError(f"{len(answer)} messages in answer to a link query")
    return decode_link(answer[0])


async def set_link(nl: NetlinkSocket, index: int, *, up: bool | None = None,
                   mtu: int | None = None) -> None:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    payload = IFINFOMSG.pack(0, 0, index, flags, change)
    if mtu is not None:
        payload += attr_u32(IFLA_MTU, mtu)
    await nl.request(RTM_NEWLINK, netlink.NLM_F_REQUEST, payload)


def _family(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


async def replace_address(nl: NetlinkSocket, index: int, address: Interface, *,
                          lifetimes: tuple[int, int] | None = None,
                          broadcast: str | None = None, flags: int = 0) -> None:
    """Add or update an address; `lifetimes` = (valid, preferred) seconds, else forever."""
    ip = address.ip
    payload = IFADDRMSG.pack(_family(ip), address.network.prefixlen, 0, 0, index)
    payload += attr(IFA_ADDRESS, ip.packed)
    if lifetimes is not None:
        valid, preferred = lifetimes
        if preferred > valid:
            raise ValueError(f"preferred lifetime {preferred} exceeds valid lifetime {valid}")
        payload += attr(IFA_CACHEINFO, CACHEINFO.pack(preferred, valid, 0, 0))
    if broadcast:
        payload += attr(IFA_BROADCAST, ipaddress.IPv4Address(broadcast).packed)
    if ip.version == 4:  # IPv4's own address; IFA_ADDRESS is the peer's on point-to-point
        payload += attr(IFA_LOCAL, ip.packed)
    if flags:
        payload += attr_u32(IFA_FLAGS, flags)
    await nl.request(RTM_NEWADDR, REPLACE, payload)


async def delete_address(nl: NetlinkSocket, index: int, address: Interface) -> None:
    ip = address.ip
    payload = IFADDRMSG.pack(_family(ip), address.network.prefixlen, 0, 0, index)
    payload += attr(IFA_ADDRESS, ip.packed)
    if ip.version == 4:
        payload += attr(IFA_LOCAL, ip.packed)
    await nl.request(RTM_DELADDR, netlink.NLM_F_REQUEST, payload)


def _route_payload(gateway: str, oif: int, priority: int, *, replace: bool,
                   onlink: bool) -> bytes:
    """A main-table default route through `gateway`: created static and unicast; a delete
    leaves protocol, scope and type open so that it matches whoever made the route."""
    gw = ipaddress.ip_address(gateway)
    proto, kind = (RTPROT_STATIC, RTN_UNICAST) if replace else (0, 0)
    header = RTMSG.pack(_family(gw), 0, 0, 0, RT_TABLE_MAIN, proto, 0, kind,
                        RTNH_F_ONLINK if onlink else 0)
    return (header + attr(RTA_GATEWAY, gw.packed) + attr_u32(RTA_OIF, oif)
            + attr_u32(RTA_PRIORITY, priority))


async def replace_default_route(nl: NetlinkSocket, gateway: str, oif: int, priority: int, *,
                                onlink: bool = False) -> None:
    payload = _route_payload(gateway, oif, priority, replace=True, onlink=onlink)
    await nl.request(RTM_NEWROUTE, REPLACE, payload)


async def delete_default_route(nl: NetlinkSocket, gateway: str, oif: int, priority: int) -> None:
    payload = _route_payload(gateway, oif, priority, replace=False, onlink=False)
    await nl.request(RTM_DELROUTE, netlink.NLM_F_REQUEST, payload)


async def dump_addresses(nl: NetlinkSocket, family: int = socket.AF_UNSPEC) -> list[Msg]:
    answer = await nl.request(RTM_GETADDR, DUMP, IFADDRMSG.pack(family, 0, 0, 0, 0))
    return [decode_address(m) for m in answer]


async def dump_routes(nl: NetlinkSocket, family: int) -> list[Msg]:
    payload = RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
    return [decode_route(m) for m in await nl.request(RTM_GETROUTE, DUMP, payload)]
