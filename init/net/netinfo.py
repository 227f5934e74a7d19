"""GetNetworkInfo's data: every interface as the kernel sees it now, plus the resolver's servers.

Read from live netlink state (links, addresses, main-table default routes), never from what was
requested, so the answer is what the guest really has. The extractors turn decoded rtnl messages
into plain tuples and `assemble` is a pure function over them: unit tests feed it recorded shapes.
The network manager puts lease data (delegated prefix, per-interface DNS) on top of this.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

LOG = logging.getLogger("mvirt-one")

RESOLV_CONF = Path("/etc/resolv.conf")

IFF_LOOPBACK = 0x8
IFA_F_SECONDARY = 0x01  # IPv4; for IPv6 the same bit is IFA_F_TEMPORARY (a privacy address)
IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_SITE = 200
# Link types of IP-in-IP, 6in4 (sit), IPv6-in-IPv6 and GRE tunnels (linux/if_arp.h): the kernel
# makes a fallback device of each (sit0, tunl0...) when the protocol is built in; no NIC of the
# VM, never reported.
ARPHRD_TUNNEL, ARPHRD_TUNNEL6, ARPHRD_SIT, ARPHRD_IPGRE, ARPHRD_IP6GRE = 768, 769, 776, 778, 823
TUNNEL_TYPES = frozenset({ARPHRD_TUNNEL, ARPHRD_TUNNEL6, ARPHRD_SIT, ARPHRD_IPGRE,
                          ARPHRD_IP6GRE})
ULA = ipaddress.IPv6Network("fc00::/7")
RT_TABLE_MAIN = 254
RTN_UNICAST = 1


@dataclass
class InterfaceState:
    """One interface, field for field what InterfaceInfo carries ("" / [] when absent)."""

    ifindex: int
    name: str
    mac_address: str
    loopback: bool = False
    ipv4_address: str = ""
    ipv4_netmask: str = ""
    ipv4_gateway: str = ""
    ipv4_dns: list[str] = field(default_factory=list)
    ipv6_address: str = ""
    ipv6_gateway: str = ""
    ipv6_dns: list[str] = field(default_factory=list)
    delegated_prefix: str = ""


class Link(NamedTuple):
    ifindex: int
    name: str
    mac: str
    loopback: bool
    tunnel: bool = False  # an IP tunnel (sit, ipip, gre...): not reported


class Address(NamedTuple):
    ifindex: int
    family: int
    address: str
    prefixlen: int
    scope: int
    flags: int


class Gateway(NamedTuple):
    family: int
    oif: int
    gateway: str
    metric: int


def link_of(msg: Mapping[str, Any]) -> Link:
    return Link(int(msg["index"]), str(msg.get("IFLA_IFNAME") or f"if{msg['index']}"),
                str(msg.get("IFLA_ADDRESS") or ""), bool(int(msg["flags"]) & IFF_LOOPBACK),
                int(msg.get("ifi_type") or 0) in TUNNEL_TYPES)


def address_of(msg: Mapping[str, Any]) -> Address | None:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    if not addr:
        return None
    # IFA_FLAGS (32 bits) supersedes the 8-bit header field when present.
    flags = msg.get("IFA_FLAGS")
    return Address(int(msg["index"]), int(msg["family"]), str(addr), int(msg["prefixlen"]),
                   int(msg["scope"]), int(flags if flags is not None else msg["flags"]))


def gateways_of(msg: Mapping[str, Any]) -> list[Gateway]:
    """The default-route next hops in one route message (none if it is not a default route)."""
    table = msg.get("RTA_TABLE") or msg.get("table")
    if int(msg["dst_len"]) != 0 or int(msg["type"]) != RTN_UNICAST or table != RT_TABLE_MAIN:
        return []
    family = int(msg["family"])
    metric = int(msg.get("RTA_PRIORITY") or 0)
    hops = msg.get("RTA_MULTIPATH")
    if hops:  # ECMP: each hop has its own interface and gateway
        return [Gateway(family, int(h["oif"]), str(h.get("RTA_GATEWAY")), metric)
                for h in hops if h.get("RTA_GATEWAY")]
    gw, oif = msg.get("RTA_GATEWAY"), msg.get("RTA_OIF")
    if not gw or oif is None:
        return []
    return [Gateway(family, int(oif), str(gw), metric)]


def parse_resolv_conf(text: str) -> tuple[list[str], list[str]]:
    """The `nameserver` lines of a resolv.conf, split into (IPv4, IPv6); bad lines are skipped."""
    v4: list[str] = []
    v6: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            ip = ipaddress.ip_address(words[1].split("%")[0])  # fe80::1%eth0: scope id
        except ValueError:
            continue
        (v4 if ip.version == 4 else v6).append(words[1])
    return v4, v6


def _ipv6_rank(a: Address) -> tuple[int, ...] | None:
    """How good an address is to report (lower is better), None if not at all: global, then
    unique local (fc00::/7), then site-local (fec0::/10, what qemu's user network hands out);
    a usable one before a deprecated one, a stable one before a temporary one. Link-local and
    host addresses, and those still in or failed at duplicate detection, are not reported."""
    if a.flags & (IFA_F_DADFAILED | IFA_F_TENTATIVE):
        return None
    if a.scope == RT_SCOPE_UNIVERSE:
        kind = 1 if ipaddress.IPv6Address(a.address.split("%")[0]) in ULA else 0
    elif a.scope == RT_SCOPE_SITE:
        kind = 2
    else:
        return None
    return (kind, bool(a.flags & IFA_F_DEPRECATED), bool(a.flags & IFA_F_TEMPORARY))


def assemble(links: Iterable[Link], addresses: Iterable[Address], gateways: Iterable[Gateway],
             dns: tuple[list[str], list[str]]) -> list[InterfaceState]:
    """Interfaces in index order (IP tunnels left out) with their primary IPv4 address, best
    IPv6 address and default gateways."""
    out = {link.ifindex: InterfaceState(link.ifindex, link.name, link.mac, link.loopback)
           for link in sorted(links) if not link.tunnel}
    primary_v4: set[int] = set()
    best_v6: dict[int, tuple[int, ...]] = {}
    for a in addresses:
        iface = out.get(a.ifindex)
        if iface is None:
            continue
        if a.family == socket.AF_INET and a.ifindex not in primary_v4:
            # The kernel lists the primary address first; a secondary only stands in for none.
            if not iface.ipv4_address or not a.flags & IFA_F_SECONDARY:
                iface.ipv4_address = a.address
                iface.ipv4_netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{a.prefixlen}").netmask)
                if not a.flags & IFA_F_SECONDARY:
                    primary_v4.add(a.ifindex)
        elif a.family == socket.AF_INET6 and (rank := _ipv6_rank(a)) is not None \
                and rank < best_v6.get(a.ifindex, (9,)):
            best_v6[a.ifindex] = rank
            iface.ipv6_address = a.address
    for gw in sorted(gateways, key=lambda g: g.metric):  # lowest metric wins, as in the kernel
        iface = out.get(gw.oif)
        if iface is None:
            continue
        if gw.family == socket.AF_INET and not iface.ipv4_gateway:
            iface.ipv4_gateway = gw.gateway
        elif gw.family == socket.AF_INET6 and not iface.ipv6_gateway:
            iface.ipv6_gateway = gw.gateway
    v4_dns, v6_dns = dns
    for iface in out.values():
        # resolv.conf is system-wide: its servers are reached over the real interfaces, not lo.
        if not iface.loopback:
            iface.ipv4_dns = list(v4_dns)
            iface.ipv6_dns = list(v6_dns)
    return list(out.values())


def read_dns(path: Path = RESOLV_CONF) -> tuple[list[str], list[str]]:
    try:
        return parse_resolv_conf(path.read_text(errors="replace"))
    except FileNotFoundError:
        return [], []
    except OSError as e:
        LOG.warning("cannot read %s: %s", path, e)
        return [], []


async def read(resolv_conf: Path = RESOLV_CONF) -> list[InterfaceState]:
    """The live state of every interface (netlink dumps of links, addresses and routes)."""
    from init.net import rtnl

    async with rtnl.open_socket() as nl:
        links = [link_of(m) for m in await rtnl.dump_links(nl)]
        addresses = [a for m in await rtnl.dump_addresses(nl) if (a := address_of(m)) is not None]
        gateways: list[Gateway] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in await rtnl.dump_routes(nl, family):
                gateways += gateways_of(m)
    return assemble(links, addresses, gateways, read_dns(resolv_conf))


async def first_ipv4() -> str:
    """The first IPv4 address of a non-loopback interface, "" if there is none (local mode's
    pod address: the host has no network manager of ours)."""
    for state in await read():
        if not state.loopback and state.ipv4_address:
            return state.ipv4_address
    return ""
