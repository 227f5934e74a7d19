"""The `ip=` kernel parameter (Documentation/admin-guide/nfs/nfsroot.rst, plus dracut's forms).

Our kernel has no IP autoconfiguration (CONFIG_IP_PNP): the init reads `ip=` itself, in the
forms users already write for the kernel or dracut:

    ip=off | none                       no network configuration at all
    ip=dhcp | on | any | both           DHCPv4 and IPv6 (the default)
    ip=dhcp6 | auto6                    IPv6 only (no DHCPv4)
    ip=<device>:<method>                the same, for one device (dracut)
    ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<method>:<dns0>:<dns1>:<ntp0>
                                        static when <method> is off/none/empty, else <method>

IPv6 addresses go in brackets (`[2001:db8::2]`); <netmask> may be dotted or a prefix length
(required for IPv6). <server> and <ntp0> are accepted and ignored. Only IpParamError escapes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

METHODS = {"off": "off", "none": "off", "dhcp": "dhcp", "on": "dhcp", "any": "dhcp",
           "both": "dhcp", "bootp": "dhcp", "rarp": "dhcp", "dhcp6": "ipv6", "auto6": "ipv6"}
IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # IFNAMSIZ-1; no '/' or whitespace

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class IpParamError(ValueError):
    """An ip= value the init cannot use; the message says which part."""


@dataclass(frozen=True)
class IpParam:
    """One ip= value. method: "static", "dhcp" (v4 + v6), "ipv6" (v6 only) or "off"."""

    method: str
    device: str | None = None  # None: the first interface (static) or every one (others)
    address: IpInterface | None = None
    gateway: IpAddress | None = None
    hostname: str | None = None
    dns: tuple[IpAddress, ...] = ()


def _split(value: str) -> list[str]:
    """Split on ':' outside brackets (IPv6 addresses are bracketed)."""
    fields: list[str] = []
    current = ""
    depth = 0
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise IpParamError("unbalanced ']'")
        if ch == ":" and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise IpParamError("unbalanced '['")
    fields.append(current)
    return fields


def _address(text: str, what: str) -> IpAddress | None:
    text = text.strip()
    if not text:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise IpParamError(f"{what} {text!r} is not an IP address") from None


def _prefixlen(mask: str, version: int) -> int:
    mask = mask.strip()
    if mask.isdigit() and len(mask) <= 3:
        plen = int(mask)
        if plen > (32 if version == 4 else 128):
            raise IpParamError(f"prefix length {plen} is too long")
        return plen
    if version == 6:
        raise IpParamError(f"IPv6 netmask {mask!r}: give a prefix length")
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise IpParamError(f"netmask {mask!r} is not a netmask") from None


def _device(text: str) -> str | None:
    if not text:
        return None
    if not IFNAME.fullmatch(text):
        raise IpParamError(f"device {text!r} is not an interface name")
    return text


def _method(text: str) -> str:
    try:
        return METHODS[text.strip().lower()]
    except KeyError:
        raise IpParamError(f"unknown method {text!r}: use off, none, dhcp, dhcp6 or "
                           "auto6") from None


def parse(value: str) -> IpParam:
    if len(value) > 1024:
        raise IpParamError("value too long")
    if ":" not in value and not _looks_like_ipv4(value):
        return IpParam(_method(value) if value.strip() else "dhcp")
    fields = _split(value)
    if len(fields) == 2 and IFNAME.fullmatch(fields[0]) and not _looks_like_ipv4(fields[0]):
        # dracut: <device>:<method>; no method means the default, DHCP
        return IpParam(_method(fields[1]) if fields[1].strip() else "dhcp", _device(fields[0]))
    if len(fields) > 10:
        raise IpParamError(f"{len(fields)} fields; at most 10")
    fields += [""] * (10 - len(fields))
    client, _server, gateway, netmask, hostname, device, method, dns0, dns1, _ntp = fields
    # No method in the kernel's form: static if there is an address (checked below).
    kind = _method(method) if method.strip() else "static"
    address = _address(client, "client address")
    if kind == "off" and address is not None:
        kind = "static"  # the kernel's own form: an address with autoconf off
    interface: IpInterface | None = None
    if address is not None:
        if netmask:
            plen = _prefixlen(netmask, address.version)
        elif address.version == 4:
            plen = _classful(address)
        else:
            raise IpParamError(f"{address}: give a prefix length in the netmask field")
        interface = ipaddress.ip_interface(f"{address}/{plen}")
    elif kind == "static":
        raise IpParamError("no client address and no method")
    gw = _address(gateway, "gateway")
    if gw is not None and interface is not None and gw.version != interface.version:
        raise IpParamError(f"gateway {gw} is not of the address's family")
    host = hostname.strip() or None
    if host is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", host):
        raise IpParamError(f"hostname {host!r} is not a host name")
    dns = tuple(a for a in (_address(dns0, "dns0"), _address(dns1, "dns1")) if a is not None)
    return IpParam(kind, _device(device), interface if kind == "static" else None,
                   gw if kind == "static" else None, host, dns)


def _looks_like_ipv4(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text))


def _classful(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    first = int(address) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24
