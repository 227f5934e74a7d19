"""`onectl netinfo`: the guest's network interfaces and their addresses."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from onectl.commands._common import add_command, show, unary
from onectl.output import print_table
from oneproto import one_pb2

HEADER = ("NAME", "MAC", "IPV4", "GATEWAY", "IPV6", "GATEWAY6", "DNS")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(sub, common, "netinfo", handle, help="list the guest's interfaces",
                description="Call GetNetworkInfo: every interface with its MAC, addresses, "
                "gateways and DNS servers.")


def _ipv4(iface: one_pb2.InterfaceInfo) -> str:
    """address/prefix; the netmask may come as dotted quad or prefix length."""
    if not iface.ipv4_address:
        return ""
    if not iface.ipv4_netmask:
        return iface.ipv4_address
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{iface.ipv4_netmask}").prefixlen
    except ValueError:
        return f"{iface.ipv4_address} mask {iface.ipv4_netmask}"
    return f"{iface.ipv4_address}/{prefix}"


def rows(info: one_pb2.NetworkInfo) -> list[list[str]]:
    return [[i.name, i.mac_address, _ipv4(i), i.ipv4_gateway, i.ipv6_address, i.ipv6_gateway,
             ",".join([*i.ipv4_dns, *i.ipv6_dns])]
            for i in info.interfaces]


def handle(args: argparse.Namespace) -> int:
    reply = unary(args, "GetNetworkInfo", one_pb2.Empty())
    show(args, reply, lambda: print_table(HEADER, rows(reply)))
    return 0
