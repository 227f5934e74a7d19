"""GetNetworkInfo's data: the pure assembly from netlink shapes, resolv.conf, and a live read."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from init.net import netinfo
from init.net.netinfo import Address, Gateway, Link

AF4, AF6 = socket.AF_INET, socket.AF_INET6
PERMANENT = 0x80

LINKS = [Link(2, "eth0", "52:54:00:12:34:56", False), Link(1, "lo", "00:00:00:00:00:00", True)]


def _route(**fields: Any) -> dict[str, Any]:
    """A route message as pyroute2 hands it over (header fields and attributes in one mapping)."""
    base: dict[str, Any] = {"family": AF4, "dst_len": 0, "type": 1, "table": 254,
                            "RTA_TABLE": 254}
    base.update(fields)
    return base


def test_every_link_with_first_addresses_netmask_and_gateways() -> None:
    addrs = [
        Address(1, AF4, "127.0.0.1", 8, 254, PERMANENT),
        Address(1, AF6, "::1", 128, 254, PERMANENT),  # host scope: not global
        Address(2, AF4, "10.0.2.15", 24, 0, 0),
        Address(2, AF4, "10.0.2.16", 24, 0, 0x01),  # secondary
        Address(2, AF6, "fe80::5054:ff:fe12:3456", 64, 253, PERMANENT),  # link scope
        Address(2, AF6, "fec0::5054:ff:fe12:3456", 64, 0, 0),
    ]
    gws = [Gateway(AF4, 2, "10.0.2.2", 100), Gateway(AF6, 2, "fe80::2", 1024)]
    out = netinfo.assemble(LINKS, addrs, gws, (["10.0.2.3"], ["fec0::3"]))
    lo, eth0 = out
    assert (lo.name, lo.ipv4_address, lo.ipv4_netmask, lo.ipv6_address) == \
        ("lo", "127.0.0.1", "255.0.0.0", "")
    assert lo.ipv4_dns == [] and lo.ipv6_dns == []
    assert eth0.mac_address == "52:54:00:12:34:56"
    assert (eth0.ipv4_address, eth0.ipv4_netmask, eth0.ipv4_gateway) == \
        ("10.0.2.15", "255.255.255.0", "10.0.2.2")
    assert (eth0.ipv6_address, eth0.ipv6_gateway) == ("fec0::5054:ff:fe12:3456", "fe80::2")
    assert (eth0.ipv4_dns, eth0.ipv6_dns) == (["10.0.2.3"], ["fec0::3"])
    assert eth0.delegated_prefix == ""


def test_secondary_only_stands_in_and_tentative_ipv6_is_skipped() -> None:
    addrs = [Address(2, AF4, "192.0.2.9", 32, 0, 0x01),
             Address(2, AF6, "2001:db8::1", 64, 0, 0x40),  # tentative (DAD running)
             Address(2, AF6, "2001:db8::2", 64, 0, 0x08),  # DAD failed
             Address(2, AF6, "2001:db8::3", 64, 0, 0)]
    (eth0,) = netinfo.assemble(LINKS[:1], addrs, [], ([], []))
    assert (eth0.ipv4_address, eth0.ipv4_netmask) == ("192.0.2.9", "255.255.255.255")
    assert eth0.ipv6_address == "2001:db8::3"


def test_lowest_metric_default_route_wins() -> None:
    gws = [Gateway(AF4, 2, "10.0.0.9", 600), Gateway(AF4, 2, "10.0.0.1", 100),
           Gateway(AF4, 7, "10.9.9.9", 0)]  # an interface that vanished meanwhile
    (eth0,) = netinfo.assemble(LINKS[:1], [], gws, ([], []))
    assert eth0.ipv4_gateway == "10.0.0.1"


def test_gateways_only_from_main_table_unicast_default_routes() -> None:
    assert netinfo.gateways_of(_route(RTA_GATEWAY="10.0.2.2", RTA_OIF=2)) == \
        [Gateway(AF4, 2, "10.0.2.2", 0)]
    assert netinfo.gateways_of(_route(dst_len=24, RTA_GATEWAY="10.0.2.2", RTA_OIF=2)) == []
    assert netinfo.gateways_of(_route(table=255, RTA_TABLE=255, RTA_GATEWAY="1.1.1.1",
                                      RTA_OIF=2)) == []
    assert netinfo.gateways_of(_route(type=2, RTA_OIF=1)) == []  # local route
    assert netinfo.gateways_of(_route(RTA_OIF=2)) == []  # on-link default: no gateway
    multipath = _route(family=AF6, RTA_PRIORITY=5, RTA_MULTIPATH=[
        {"oif": 2, "RTA_GATEWAY": "fe80::1"}, {"oif": 3, "RTA_GATEWAY": "fe80::2"}])
    assert netinfo.gateways_of(multipath) == [Gateway(AF6, 2, "fe80::1", 5),
                                              Gateway(AF6, 3, "fe80::2", 5)]


def test_resolv_conf_nameservers_split_by_family() -> None:
    text = ("# generated\nsearch example.test\nnameserver 10.0.2.3\nnameserver fec0::3\n"
            "nameserver fe80::1%eth0\nnameserver not-an-ip\nnameserver\noptions ndots:1\n"
            "  nameserver 192.0.2.53  # trailing\n")
    assert netinfo.parse_resolv_conf(text) == (["10.0.2.3", "192.0.2.53"],
                                               ["fec0::3", "fe80::1%eth0"])


def test_missing_resolv_conf_means_no_dns(tmp_path: Path) -> None:
    assert netinfo.read_dns(tmp_path / "absent") == ([], [])


def test_live_read_matches_the_kernel(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\n")
    out = asyncio.run(netinfo.read(resolv))
    assert {i.name for i in out} == {name for _, name in socket.if_nameindex()}
    lo = next(i for i in out if i.name == "lo")
    assert (lo.ipv4_address, lo.ipv4_netmask, lo.ipv4_dns) == ("127.0.0.1", "255.0.0.0", [])
    for iface in out:
        if not iface.loopback:
            assert iface.ipv4_dns == ["127.0.0.53"]


# Recorded through pyroute2 (the fields netinfo reads), in a network namespace holding an
# address of each kind on a veth that has the guest's MAC, as `ip -6 addr` shows them:
#   2001:db8:1::5/64 scope global deprecated    2001:db8::5/64 scope global
#   fd00:1::5/64 scope global                   fec0::5054:ff:fe12:3456/64 scope site
#   fe80::5054:ff:fe12:3456/64 scope link tentative
# plus a sit0 as the kernel makes it with CONFIG_IPV6_SIT (ARPHRD_SIT, IFF_NOARP, down; the VM
# fault test checks the guest's real one is left out).
RECORDED_LINKS = [
    {"index": 1, "flags": 65609, "ifi_type": 772, "IFLA_IFNAME": "lo",
     "IFLA_ADDRESS": "00:00:00:00:00:00"},
    {"index": 2, "flags": 128, "ifi_type": 776, "IFLA_IFNAME": "sit0",
     "IFLA_ADDRESS": "00:00:00:00"},
    {"index": 3, "flags": 69699, "ifi_type": 1, "IFLA_IFNAME": "eth0",
     "IFLA_ADDRESS": "52:54:00:12:34:56"},
]


def _addr(index: int, family: int, prefixlen: int, scope: int, flags: int,
          address: str) -> dict[str, Any]:
    """An address message as pyroute2 hands it over: IPv6 ones carry no IFA_LOCAL."""
    return {"index": index, "family": family, "prefixlen": prefixlen, "scope": scope,
            "flags": flags, "IFA_FLAGS": flags, "IFA_ADDRESS": address,
            "IFA_LOCAL": address if family == AF4 else None}


RECORDED_ADDRS = [
    _addr(1, AF4, 8, 254, 128, "127.0.0.1"),
    _addr(3, AF4, 24, 0, 128, "10.0.2.15"),
    _addr(1, AF6, 128, 254, 128, "::1"),
    _addr(3, AF6, 64, 0, 162, "2001:db8:1::5"),
    _addr(3, AF6, 64, 0, 130, "2001:db8::5"),
    _addr(3, AF6, 64, 0, 130, "fd00:1::5"),
    _addr(3, AF6, 64, 200, 130, "fec0::5054:ff:fe12:3456"),
    _addr(3, AF6, 64, 253, 192, "fe80::5054:ff:fe12:3456"),
]


def _recorded(without: tuple[str, ...] = ()) -> list[netinfo.InterfaceState]:
    addrs = [a for m in RECORDED_ADDRS
             if (a := netinfo.address_of(m)) is not None and a.address not in without]
    return netinfo.assemble([netinfo.link_of(m) for m in RECORDED_LINKS], addrs,
                            [Gateway(AF4, 3, "10.0.2.2", 0)], (["10.0.2.3"], []))


def test_tunnels_are_not_reported_nor_given_the_dns_servers() -> None:
    out = _recorded()
    assert [i.name for i in out] == ["lo", "eth0"]
    assert out[1].ipv4_dns == ["10.0.2.3"]


def test_the_best_ipv6_address_is_reported() -> None:
    # Each in turn, as the better ones go: global and usable, global but deprecated, unique
    # local, then qemu user networking's SLAAC address in fec0::/64 (site-local).
    order = ["2001:db8::5", "2001:db8:1::5", "fd00:1::5", "fec0::5054:ff:fe12:3456"]
    for gone in range(len(order) + 1):
        expected = order[gone] if gone < len(order) else ""  # link-local only: none
        assert _recorded(tuple(order[:gone]))[1].ipv6_address == expected
