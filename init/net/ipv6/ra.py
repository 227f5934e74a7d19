"""Router advertisements (RFC 4861 4.2), read beside the kernel.

The kernel does SLAAC, the default route and the MTU from each RA (accept_ra=1); what it leaves to
user space is what we read here: the M/O flags (whether to run DHCPv6), RDNSS and DNSSL
(RFC 8106, for resolv.conf). A raw ICMPv6 socket filtered to type 134 gets a copy of every RA the
kernel sees. `parse` raises only RaParseError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from init.net import dnsname

LOG = logging.getLogger("mvirt-one")

ND_ROUTER_ADVERT = 134
FLAG_MANAGED = 0x80
FLAG_OTHER = 0x40
OPT_PREFIX_INFO, OPT_MTU, OPT_RDNSS, OPT_DNSSL = 3, 5, 25, 31
ICMP6_FILTER = 1
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52


class RaParseError(ValueError):
    """Not a valid router advertisement; the message says why."""


@dataclass(frozen=True)
class Prefix:
    prefix: str
    on_link: bool
    autonomous: bool
    valid: int
    preferred: int


@dataclass(frozen=True)
class RouterAdvert:
    router: str  # the link-local source address
    managed: bool  # M: addresses (and, for us, delegated prefixes) from DHCPv6
    other: bool  # O: other configuration (DNS) from DHCPv6
    router_lifetime: int
    prefixes: tuple[Prefix, ...] = ()
    mtu: int | None = None
    dns: tuple[str, ...] = ()
    dns_lifetime: int = 0
    search: tuple[str, ...] = ()
    search_lifetime: int = 0


def parse(data: bytes, source: str = "::", hop_limit: int = 255) -> RouterAdvert:
    """Validate and read an RA (the ICMPv6 message, without the IPv6 header)."""
    if hop_limit != 255:
        raise RaParseError(f"hop limit {hop_limit}: not from this link")  # RFC 4861 6.1.2
    try:
        src = ipaddress.IPv6Address(source.split("%")[0])
    except ValueError:
        raise RaParseError(f"source {source!r} is not an IPv6 address") from None
    if source != "::" and not src.is_link_local:
        raise RaParseError(f"source {source} is not link-local")
    if len(data) < 16:
        raise RaParseError(f"{len(data)} bytes are too short for an RA")
    if data[0] != ND_ROUTER_ADVERT or data[1] != 0:
        raise RaParseError(f"ICMPv6 type {data[0]} code {data[1]} is not an RA")
    flags = data[5]
    router_lifetime = struct.unpack_from("!H", data, 6)[0]
    prefixes: list[Prefix] = []
    mtu: int | None = None
    dns: list[str] = []
    dns_lifetime = 0
    search: list[str] = []
    search_lifetime = 0
    offset = 16
    while offset < len(data):
        if offset + 2 > len(data):
            raise RaParseError("truncated option")
        kind, units = data[offset], data[offset + 1]
        if units == 0:
            raise RaParseError("option of length 0")  # RFC 4861 4.6: discard the packet
        if offset + units * 8 > len(data):
            raise RaParseError(f"option {kind} runs past the end")
        body = data[offset + 2:offset + units * 8]
        offset += units * 8
        if kind == OPT_PREFIX_INFO and units == 4:
            plen, pflags = body[0], body[1]
            valid, preferred = struct.unpack_from("!II", body, 2)
            if plen > 128:
                continue
            net = ipaddress.IPv6Network((body[14:30], plen), strict=False)
            prefixes.append(Prefix(str(net), bool(pflags & 0x80), bool(pflags & 0x40),
                                   valid, preferred))
        elif kind == OPT_MTU and units == 1:
            mtu = struct.unpack_from("!I", body, 2)[0]
        elif kind == OPT_RDNSS:
            if units < 3 or (units - 1) % 2:
                raise RaParseError(f"RDNSS option of {units} units")  # RFC 8106 5.1
            dns_lifetime = struct.unpack_from("!I", body, 2)[0]
            dns += [str(ipaddress.IPv6Address(body[i:i + 16])) for i in range(6, len(body), 16)]
        elif kind == OPT_DNSSL:
            if units < 2:
                raise RaParseError("DNSSL option too short")
            search_lifetime = struct.unpack_from("!I", body, 2)[0]
            try:
                search += dnsname.decode_names(body[6:], compression=False)
            except dnsname.DnsNameError as e:
                raise RaParseError(f"DNSSL: {e}") from None
    return RouterAdvert(str(src), bool(flags & FLAG_MANAGED), bool(flags & FLAG_OTHER),
                        router_lifetime, tuple(prefixes), mtu, tuple(dns), dns_lifetime,
                        tuple(search), search_lifetime)


def own_addresses(ifname: str, table: str = "/proc/net/if_inet6") -> set[ipaddress.IPv6Address]:
    """The IPv6 addresses the kernel has on `ifname` now."""
    found: set[ipaddress.IPv6Address] = set()
    try:
        with open(table) as f:
            for line in f:
                fields = line.split()
                if len(fields) == 6 and fields[5] == ifname and len(fields[0]) == 32:
                    found.add(ipaddress.IPv6Address(int(fields[0], 16)))
    except (OSError, ValueError):
        pass
    return found


def from_self(source: str, ifname: str, table: str = "/proc/net/if_inet6") -> bool:
    try:
        address = ipaddress.IPv6Address(source.split("%")[0])
    except ValueError:
        return False
    return address in own_addresses(ifname, table)


def _filter_only_ra() -> bytes:
    # struct icmp6_filter: 256 bits, a set bit blocks that type.
    words = [0xFFFFFFFF] * 8
    words[ND_ROUTER_ADVERT >> 5] &= ~(1 << (ND_ROUTER_ADVERT & 31))
    return struct.pack("8I", *words)


class RaListener:
    """A raw ICMPv6 socket on one interface that hands every valid RA to `on_ra`."""

    def __init__(self, ifname: str, on_ra: Callable[[RouterAdvert], None]) -> None:
        self.ifname = ifname
        self._on_ra = on_ra
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Open before the link goes up, so the first RA (answer to the first RS) is not lost."""
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _filter_only_ra())
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._sock = s
        asyncio.get_running_loop().add_reader(s.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(
                    2048, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                LOG.debug("ra %s: receive failed: %s", self.ifname, e)
                return
            hop_limit = -1
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                    hop_limit = struct.unpack("i", value[:4])[0]
            try:
                ra = parse(data, str(addr[0]), hop_limit)
                if from_self(ra.router, self.ifname):
                    # Sent from this VM (its multicast comes back to us): a container, not a
                    # router, however valid it looks.
                    raise RaParseError("sent from one of this interface's own addresses")
            except RaParseError as e:
                LOG.debug("ra %s: ignored packet from %s: %s", self.ifname, addr[0], e)
                continue
            try:
                self._on_ra(ra)
            except Exception:
                LOG.exception("ra %s: handling an RA failed", self.ifname)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
