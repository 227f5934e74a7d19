"""NetworkManager: configures every interface concurrently and keeps what each one learnt.

PID 1 starts it in the network phase, waits a bounded time for the interfaces to be configured
(DHCP keeps trying in the background afterwards), asks it for `interfaces()` when GetNetworkInfo
is called, and stops it on the way down (RELEASE). Tests drive it in a network namespace of
their own through `python -m init.net`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from init.net import links, resolv
from init.net.interface import Interface
from init.net.static import IpParam

LOG = logging.getLogger("mvirt-one")

@dataclass(frozen=True, kw_only=True)
class NetSettings:
    wait: float  # how long start() waits for the interfaces (one.dhcp_timeout)
    ip: tuple[IpParam, ...] = ()  # ip= / one.ip= values
    dns: tuple[str, ...] = ()  # one.dns: replaces what leases and RAs say
    search: tuple[str, ...] = ()  # one.search
    resolv_conf: Path = Path("/etc/resolv.conf")
    hostname: str | None = None  # sent in DHCP requests
    # Called with a lease's host name; None when the command line set one (it wins).
    set_hostname: Callable[[str], None] | None = None
    interfaces: tuple[str, ...] | None = None  # None: every Ethernet NIC (PID 1 mode)
    ipv6: bool = True


def plan(available: Sequence[links.LinkInfo], params: Iterable[IpParam],
         only: Sequence[str] | None = None) -> dict[str, IpParam]:
    """Which method each interface gets. A device-specific ip= wins; a static ip= without a
    device goes to the first interface (as the kernel does); the rest get the device-less
    method (DHCP by default). Interfaces with method "off" are left alone."""
    chosen = [link for link in available
              if (link.name in only if only is not None else link.configurable)]
    params = list(params)
    by_device = {p.device: p for p in params if p.device is not None}
    generic = [p for p in params if p.device is None]
    static_default = next((p for p in generic if p.method == "static"), None)
    other_default = next((p for p in reversed(generic) if p.method != "static"), None)
    result: dict[str, IpParam] = {}
    for n, link in enumerate(chosen):
        if link.name in by_device:
            result[link.name] = by_device[link.name]
        elif n == 0 and static_default is not None:
            result[link.name] = static_default
        elif other_default is not None:
            result[link.name] = other_default
        elif static_default is not None:
            result[link.name] = IpParam("off")  # ip=<static> configures one device, as the kernel
        else:
            result[link.name] = IpParam("dhcp")
    return result


@dataclass
class LeaseData:
    """What the leases and RAs of one interface say, beside the live netlink state."""

    ipv4_dns: list[str] = field(default_factory=list)
    ipv6_dns: list[str] = field(default_factory=list)
    delegated_prefix: str = ""


def overlay(states: list[Any], leases: dict[str, LeaseData]) -> list[Any]:
    """Put lease data on live interface states (in place): per-interface DNS instead of the
    system-wide resolv.conf, and the delegated prefix, which only the DHCPv6 lease knows."""
    for state in states:
        data = leases.get(state.name)
        if data is None:
            continue
        if data.ipv4_dns:
            state.ipv4_dns = list(data.ipv4_dns)
        if data.ipv6_dns:
            state.ipv6_dns = list(data.ipv6_dns)
        state.delegated_prefix = data.delegated_prefix
    return states


class NetworkManager:
    def __init__(self, settings: NetSettings,
                 on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._on_change = on_change
        self._interfaces: dict[str, Interface] = {}
        self._resolv_written = ""

    @property
    def names(self) -> list[str]:
        return list(self._interfaces)

    async def start(self) -> bool:
        """Bring every interface up and configuring; wait at most settings.wait for all of them.

        True when all were configured in time. Never raises for one interface's trouble.
        """
        available = await links.links()
        if self.settings.interfaces is not None:
            missing = set(self.settings.interfaces) - {link.name for link in available}
            for name in sorted(missing):
                LOG.warning("network: no interface %s", name)
        methods = plan(available, self.settings.ip, self.settings.interfaces)
        for link in available:
            param = methods.get(link.name)
            if param is None:
                continue
            self._interfaces[link.name] = Interface(
                link, param, ipv6=self.settings.ipv6, hostname=self.settings.hostname,
                changed=self._changed, set_hostname=self.settings.set_hostname)
        if not self._interfaces:
            LOG.info("network: no interface to configure")
            return True
        results = await asyncio.gather(*(i.start() for i in self._interfaces.values()),
                                       return_exceptions=True)
        for iface, result in zip(self._interfaces.values(), results, strict=True):
            if isinstance(result, BaseException):
                LOG.error("%s: cannot configure: %s", iface.name, result)
                iface.configured.set()  # nothing to wait for
        return await self.wait_configured(self.settings.wait)

    async def wait_configured(self, timeout: float) -> bool:
        waits = [asyncio.ensure_future(i.configured.wait()) for i in self._interfaces.values()]
        if not waits:
            return True
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for w in pending:
            w.cancel()
        if pending:
            late = [i.name for i in self._interfaces.values() if not i.configured.is_set()]
            LOG.info("network: %s not configured after %.1f s; still trying in the background",
                     ", ".join(late), timeout)
        return not pending

    async def stop(self) -> None:
        if self._interfaces:
            await asyncio.gather(*(i.stop() for i in self._interfaces.values()),
                                 return_exceptions=True)

    # --- lease data, resolv.conf, reports ---------------------------------------------------------

    def lease_data(self) -> dict[str, LeaseData]:
        out = {}
        for name, iface in self._interfaces.items():
            v4, v6 = iface.dns()
            out[name] = LeaseData(v4, v6, iface.delegated_prefix())
        return out

    def interface(self, name: str) -> Interface | None:
        return self._interfaces.get(name)

    async def interfaces(self) -> list[Any]:
        """Every interface as GetNetworkInfo reports it: live netlink state + lease data."""
        from init.net import netinfo

        return overlay(await netinfo.read(self.settings.resolv_conf), self.lease_data())

    async def pod_address(self) -> str:
        """The VM's first IPv4 address (pods share the VM's network namespace), from what was
        applied: no netlink round trip."""
        for iface in sorted(self._interfaces.values(), key=lambda i: i.link.index):
            if iface.dhcp4 is not None:
                return str(iface.dhcp4.address.ip)
            if iface.static is not None and (address := iface.static.address) is not None \
                    and address.version == 4:
                return str(address.ip)
        return ""

    def resolv_conf_text(self) -> str | None:
        if self.settings.dns:
            return resolv.render(self.settings.dns, self.settings.search)
        servers: list[str] = []
        search: list[str] = list(self.settings.search)
        for iface in sorted(self._interfaces.values(), key=lambda i: i.link.index):
            v4, v6 = iface.dns()
            servers += v4 + v6
            if not self.settings.search:
                search += iface.search()
        if not servers and not search:
            return None  # nothing learnt yet: leave whatever is there alone
        return resolv.render(servers, search)

    def _changed(self, iface: Interface) -> None:
        text = self.resolv_conf_text()
        if text is not None and text != self._resolv_written:
            try:
                resolv.write(self.settings.resolv_conf, text)
                self._resolv_written = text
            except OSError as e:
                LOG.error("cannot write %s: %s", self.settings.resolv_conf, e)
        if self._on_change is not None:
            self._on_change()

    def summary(self) -> list[str]:
        """One line per interface for the boot log, from what was applied."""
        lines = []
        for iface in self._interfaces.values():
            parts = [iface.name, iface.link.mac]
            v4, v6 = iface.dns()
            if iface.dhcp4 is not None:
                info = iface.dhcp4
                parts.append(f"ipv4 {info.address.with_prefixlen}"
                             + (f" via {info.routers[0]}" if info.routers else ""))
            elif iface.static is not None and (address := iface.static.address) is not None:
                gateway = iface.static.gateway
                parts.append(f"ip{address.version} {address.with_prefixlen}"
                             + (f" via {gateway}" if gateway else "") + " (static)")
            else:
                parts.append("ipv4 none" if iface.param.method != "off" else "off")
            if v4:
                parts.append("dns " + " ".join(v4))
            if iface.dhcp6 is not None and iface.dhcp6.addresses:
                parts.append("ipv6 " + " ".join(a.address for a in iface.dhcp6.addresses))
            if iface.ra is not None:
                parts.append(f"ipv6 router {iface.ra.router}")
            if v6:
                parts.append("dns6 " + " ".join(v6))
            if prefix := iface.delegated_prefix():
                parts.append(f"delegated {prefix}")
            lines.append(" ".join(parts))
        return lines


def set_system_hostname(name: str) -> None:
    try:
        socket.sethostname(name)
        LOG.info("hostname %s (from DHCP)", name)
    except OSError as e:
        LOG.error("hostname %s: %s", name, e)
