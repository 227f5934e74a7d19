"""One interface's configuration: link up, then DHCPv4 or static addresses, RAs, DHCPv6.

Everything that happens to the interface goes through here and lands in its lease data
(`dhcp4`, `ra`, `dhcp6`, `static`), which the manager reports and turns into resolv.conf.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from init.net import links
from init.net.ipv6 import ra as ra_mod
from init.net.static import IpParam

LOG = logging.getLogger("mvirt-one")

CARRIER_WAIT = 2.0  # seconds; without carrier DHCP still starts (and retransmits)
RESTART_DELAY = 5.0  # after a client failed in a way it could not recover from itself


class Interface:
    def __init__(self, link: links.LinkInfo, param: IpParam, *, ipv6: bool,
                 hostname: str | None, changed: Callable[[Interface], None],
                 set_hostname: Callable[[str], None] | None = None) -> None:
        self.link = link
        self.param = param
        self.ipv6 = ipv6 and param.method != "off"
        self._hostname = hostname
        self._changed = changed
        self._set_hostname = set_hostname
        self.configured = asyncio.Event()  # the boot waits (bounded) for this
        self.dhcp4: Any = None  # dhcp4.Dhcp4Info
        self.static: IpParam | None = param if param.method == "static" else None
        self.ra: ra_mod.RouterAdvert | None = None
        self.dhcp6: Any = None  # dhcp6.Dhcp6Lease
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ra_listener: ra_mod.RaListener | None = None
        self._dhcp6_client: Any = None
        self._dhcp6_task: asyncio.Task[None] | None = None
        self._dhcp6_stateful: bool | None = None
        self.link_up_at: float | None = None  # monotonic
        self.configured_after: float | None = None  # seconds from link up to configured

    def _mark_configured(self) -> None:
        if self.configured.is_set():
            return
        if self.link_up_at is not None:
            self.configured_after = time.monotonic() - self.link_up_at
            LOG.info("%s: configured %.3f s after link up", self.name, self.configured_after)
        self.configured.set()

    @property
    def name(self) -> str:
        return self.link.name

    # --- start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.param.method == "off":
            self.configured.set()
            return
        if self.ipv6:
            try:
                self._ra_listener = ra_mod.RaListener(self.name, self._on_ra)
                self._ra_listener.open()
            except OSError as e:
                LOG.warning("%s: cannot listen for router advertisements: %s", self.name, e)
                self._ra_listener = None
        await links.set_up(self.link.index)
        self.link_up_at = time.monotonic()
        if not await links.wait_lower_up(self.link.index, CARRIER_WAIT):
            LOG.info("%s: no carrier after %.0f s; configuring anyway", self.name, CARRIER_WAIT)
        if self.param.method == "static":
            await self._apply_static()
        elif self.param.method == "dhcp":
            self._tasks.append(asyncio.ensure_future(self._run_dhcp4()))

    async def stop(self, timeout: float = 3.0) -> None:
        """Release what the servers gave (RELEASE, RFC 2131 4.4.6 / 8415 18.2.7), bounded."""
        self._stop.set()
        if self._ra_listener is not None:
            self._ra_listener.close()
        await self._stop_dhcp6(release=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()

    # --- static -----------------------------------------------------------------------------------

    async def _apply_static(self) -> None:
        p = self.param
        assert p.address is not None
        await links.replace_address(self.link.index, p.address)
        if p.gateway is not None:
            await links.replace_default_route(
                self.link.index, str(p.gateway), onlink=p.gateway not in p.address.network)
        LOG.info("%s: static %s%s", self.name, p.address.with_prefixlen,
                 f" via {p.gateway}" if p.gateway else "")
        if p.hostname and self._set_hostname is not None:
            self._set_hostname(p.hostname)
        self._mark_configured()
        self._changed(self)

    # --- DHCPv4 -----------------------------------------------------------------------------------

    async def _run_dhcp4(self) -> None:
        from init.net import dhcp4

        dhcp4.quiet_library_logs()
        while not self._stop.is_set():
            try:
                async with dhcp4.Dhcp4Client(self.name, self._on_dhcp4,
                                             hostname=self._hostname) as client:
                    await client.bootstrap()
                    await self._stop.wait()
                return  # leaving the context sent RELEASE and ran the UNBOUND hook
            except Exception as e:
                LOG.warning("%s: DHCPv4 client failed (%r); restarting in %.0f s", self.name, e,
                            RESTART_DELAY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RESTART_DELAY)

    async def _on_dhcp4(self, trigger: str, info: Any) -> None:
        index = self.link.index
        old = self.dhcp4
        if trigger in ("bound", "renewed", "rebound"):
            if old is not None and old.address != info.address:
                await self._drop_dhcp4(old)
            lifetime = info.lease_seconds
            await links.replace_address(index, info.address, valid=lifetime, preferred=lifetime,
                                        broadcast=info.broadcast)
            if info.mtu:
                await links.set_mtu(index, info.mtu)
            if info.routers:
                gw = ipaddress.IPv4Address(info.routers[0])
                await links.replace_default_route(index, str(gw),
                                                  onlink=gw not in info.address.network)
            self.dhcp4 = info
            if trigger == "bound":
                dns = f" dns {' '.join(info.dns)}" if info.dns else ""
                LOG.info("%s: dhcp4 %s%s", self.name, info.describe(), dns)
                if info.hostname and self._set_hostname is not None:
                    self._set_hostname(info.hostname)
            else:
                LOG.debug("%s: dhcp4 lease %s (%s)", self.name, trigger, info.describe())
            self._mark_configured()
        else:  # unbound, expired
            LOG.info("%s: dhcp4 lease %s: %s removed", self.name, trigger,
                     info.address.with_prefixlen)
            await self._drop_dhcp4(info)
            self.dhcp4 = None
        self._changed(self)

    async def _drop_dhcp4(self, info: Any) -> None:
        try:
            if info.routers:
                await links.delete_default_route(self.link.index, info.routers[0])
            await links.delete_address(self.link.index, info.address)
        except Exception as e:
            LOG.warning("%s: removing %s: %s", self.name, info.address, e)

    # --- IPv6: RAs and DHCPv6 ---------------------------------------------------------------------

    def _on_ra(self, advert: ra_mod.RouterAdvert) -> None:
        first = self.ra is None
        self.ra = advert
        if first:
            flags = "".join(f for f, on in (("M", advert.managed), ("O", advert.other)) if on)
            LOG.info("%s: router advertisement from %s (flags %s)%s", self.name, advert.router,
                     flags or "none", f" dns {' '.join(advert.dns)}" if advert.dns else "")
        if advert.managed or advert.other:
            self._start_dhcp6(stateful=advert.managed)
        if self.param.method == "ipv6" and not advert.managed:
            self._mark_configured()  # SLAAC is the kernel's from here
        self._changed(self)

    def _start_dhcp6(self, *, stateful: bool) -> None:
        if self._stop.is_set() or self._dhcp6_stateful == stateful:
            return
        from init.net.ipv6 import dhcp6

        if self._dhcp6_task is not None:
            self._dhcp6_task.cancel()
        self._dhcp6_stateful = stateful
        self._dhcp6_client = dhcp6.Dhcp6Client(self.name, self.link.index, self.link.mac,
                                               self._on_dhcp6, stateful=stateful)
        self._dhcp6_task = asyncio.ensure_future(self._run_dhcp6(self._dhcp6_client))

    async def _run_dhcp6(self, client: Any) -> None:
        while not self._stop.is_set():
            try:
                await client.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                LOG.warning("%s: DHCPv6 client failed (%r); restarting in %.0f s", self.name, e,
                            RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    async def _stop_dhcp6(self, *, release: bool) -> None:
        task, client = self._dhcp6_task, self._dhcp6_client
        self._dhcp6_task = self._dhcp6_client = self._dhcp6_stateful = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if release and client is not None:
            try:
                if await client.release():
                    LOG.info("%s: dhcp6 released", self.name)
            except Exception as e:
                LOG.warning("%s: dhcp6 release: %r", self.name, e)
        if self.dhcp6 is not None:
            try:
                await self._on_dhcp6(None)  # the addresses go with the bindings
            except Exception as e:
                LOG.warning("%s: removing DHCPv6 addresses: %r", self.name, e)

    async def _on_dhcp6(self, lease: Any) -> None:
        index = self.link.index
        old = self.dhcp6
        keep = {a.address for a in lease.addresses} if lease is not None else set()
        for a in old.addresses if old is not None else ():
            if a.address not in keep:
                await links.delete_address(index, ipaddress.IPv6Interface(f"{a.address}/128"))
        for a in lease.addresses if lease is not None else ():
            # /128: on-link prefixes come from the RA, not from DHCPv6 (RFC 8415 21.6).
            await links.replace_address(index, ipaddress.IPv6Interface(f"{a.address}/128"),
                                        valid=a.valid, preferred=a.preferred)
        self.dhcp6 = lease
        if lease is not None and (old is None or old.describe() != lease.describe()):
            LOG.info("%s: dhcp6 %s", self.name, lease.describe())
        elif lease is None and old is not None and not self._stop.is_set():
            LOG.info("%s: dhcp6 lease lost", self.name)
        if lease is not None and self.param.method == "ipv6":
            self._mark_configured()
        self._changed(self)

    # --- what the manager reads -------------------------------------------------------------------

    def dns(self) -> tuple[list[str], list[str]]:
        """(IPv4, IPv6) DNS servers this interface learnt, in the order to use them."""
        from init.net import resolv

        v4 = list(self.dhcp4.dns) if self.dhcp4 is not None else []
        v6: list[str] = []
        if self.ra is not None and self.ra.dns_lifetime:
            v6 += [resolv.scoped(s, self.name) for s in self.ra.dns]
        if self.dhcp6 is not None:
            v6 += [resolv.scoped(s, self.name) for s in self.dhcp6.dns]
        if self.static is not None:
            for addr in self.static.dns:
                (v4 if addr.version == 4 else v6).append(str(addr))
        return list(dict.fromkeys(v4)), list(dict.fromkeys(v6))

    def search(self) -> list[str]:
        out: list[str] = []
        if self.dhcp4 is not None:
            out += list(self.dhcp4.search) or ([self.dhcp4.domain] if self.dhcp4.domain else [])
        if self.ra is not None and self.ra.search_lifetime:
            out += self.ra.search
        if self.dhcp6 is not None:
            out += self.dhcp6.domains
        return out

    def delegated_prefix(self) -> str:
        if self.dhcp6 is None or not self.dhcp6.prefixes:
            return ""
        return str(self.dhcp6.prefixes[0].prefix)
