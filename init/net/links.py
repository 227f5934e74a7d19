"""The netlink operations the network configuration needs (rtnl does the messages).

Each call opens its own short-lived rtnl socket: the operations are rare (boot, renewals), and
interfaces configured concurrently then never share a socket's request/response stream.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from dataclasses import dataclass

from init.net import rtnl
from init.net.netlink import NetlinkError

LOG = logging.getLogger("mvirt-one")

ARPHRD_ETHER = 1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
IFA_F_NOPREFIXROUTE = 0x200
FOREVER = 0xFFFFFFFF
# Default routes of several interfaces must not replace each other (replace matches on
# destination and metric): each gets its own metric, the first interface the lowest.
METRIC_BASE = 1024


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: str
    kind: str | None  # IFLA_INFO_KIND: veth, bridge, ... ; None for a real NIC
    arphrd: int
    flags: int

    @property
    def configurable(self) -> bool:
        """What PID 1 configures by itself: Ethernet NICs, not loopback or virtual links (the
        veths and bridges that pods get are someone else's to configure)."""
        return (self.arphrd == ARPHRD_ETHER and not self.flags & IFF_LOOPBACK
                and self.kind is None)


def _link(msg: rtnl.Msg) -> LinkInfo:
    return LinkInfo(int(msg["index"]), str(msg.get("IFLA_IFNAME")),
                    str(msg.get("IFLA_ADDRESS") or ""),
                    msg.get("IFLA_LINKINFO", {}).get("IFLA_INFO_KIND"), int(msg["ifi_type"]),
                    int(msg["flags"]))


async def links() -> list[LinkInfo]:
    async with rtnl.open_socket() as nl:
        return sorted([_link(msg) for msg in await rtnl.dump_links(nl)],
                      key=lambda link: link.index)


async def link_by_name(name: str) -> LinkInfo | None:
    return next((link for link in await links() if link.name == name), None)


async def set_up(index: int) -> None:
    async with rtnl.open_socket() as nl:
        await rtnl.set_link(nl, index, up=True)


async def wait_lower_up(index: int, timeout: float) -> bool:
    """Wait for carrier: a DISCOVER sent before it is lost and costs a retransmission."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with rtnl.open_socket() as nl:
            msg = await rtnl.get_link(nl, index)
        if int(msg["flags"]) & IFF_LOWER_UP:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def set_mtu(index: int, mtu: int) -> None:
    async with rtnl.open_socket() as nl:
        await rtnl.set_link(nl, index, mtu=mtu)


async def replace_address(index: int, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                          *, valid: int | None = None, preferred: int | None = None,
                          broadcast: str | None = None, noprefixroute: bool = False) -> None:
    """Add or refresh an address; with lifetimes the kernel drops it when a lease runs out
    unrenewed, as RFC 2131/8415 want, even if the client is gone."""
    lifetimes = None
    if valid is not None:
        lifetimes = (min(valid, FOREVER),
                     min(preferred if preferred is not None else valid, valid, FOREVER))
    async with rtnl.open_socket() as nl:
        await rtnl.replace_address(nl, index, address, lifetimes=lifetimes, broadcast=broadcast,
                                   flags=IFA_F_NOPREFIXROUTE if noprefixroute else 0)


async def delete_address(index: int,
                         address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    async with rtnl.open_socket() as nl:
        try:
            await rtnl.delete_address(nl, index, address)
        except NetlinkError as e:
            if e.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                raise


def metric(index: int) -> int:
    return METRIC_BASE + index


async def replace_default_route(index: int, gateway: str, *, onlink: bool = False) -> None:
    """`onlink`: a gateway outside the leased subnet (some clouds hand out /32s)."""
    async with rtnl.open_socket() as nl:
        await rtnl.replace_default_route(nl, gateway, index, metric(index), onlink=onlink)


async def delete_default_route(index: int, gateway: str) -> None:
    async with rtnl.open_socket() as nl:
        try:
            await rtnl.delete_default_route(nl, gateway, index, metric(index))
        except NetlinkError as e:
            if e.errno not in (errno.ESRCH, errno.ENOENT):
                raise


async def addresses(index: int, family: int) -> list[tuple[str, int, int]]:
    """(address, prefixlen, IFA flags) of an interface."""
    async with rtnl.open_socket() as nl:
        out = []
        for msg in await rtnl.dump_addresses(nl, family):
            if msg["index"] != index:
                continue
            addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            flags = msg.get("IFA_FLAGS")
            out.append((str(addr), int(msg["prefixlen"]),
                        int(flags if flags is not None else msg["flags"])))
        return out
