"""A DHCPv6 client (RFC 8415): stateful addresses (IA_NA), prefix delegation (IA_PD), and
stateless configuration (Information-Request) when the RA only sets the O flag.

One instance per interface, run as a task: Solicit → Advertise → Request → Reply, then Renew at
T1, Rebind at T2, and back to Solicit when the lease runs out. Retransmission follows RFC 8415
15 (IRT/MRT/MRC/MRD with ±10 % randomisation). Bad packets are logged at debug and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from init.net.ipv6 import dhcp6msg as m

LOG = logging.getLogger("mvirt-one")

CLIENT_PORT, SERVER_PORT = 546, 547
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers

# RFC 8415 7.6 (seconds)
SOL_TIMEOUT, SOL_MAX_RT = 1.0, 3600.0
REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC = 1.0, 30.0, 10
REN_TIMEOUT, REN_MAX_RT = 10.0, 600.0
REB_TIMEOUT, REB_MAX_RT = 10.0, 600.0
INF_TIMEOUT, INF_MAX_RT = 1.0, 3600.0
REL_TIMEOUT = 1.0
IRT_DEFAULT = 86400  # information refresh time
IRT_MINIMUM = 600

WANTED_OPTIONS = (m.OPT_DNS_SERVERS, m.OPT_DOMAIN_LIST, m.OPT_INFORMATION_REFRESH_TIME)


@dataclass(frozen=True)
class Dhcp6Lease:
    """What the server gave: addresses, delegated prefixes, DNS. `obtained` is monotonic."""

    server_id: bytes
    addresses: tuple[m.IaAddress, ...]
    prefixes: tuple[m.IaPrefix, ...]
    dns: tuple[str, ...]
    domains: tuple[str, ...]
    t1: float
    t2: float
    valid: float  # seconds until the last binding expires
    obtained: float

    @property
    def stateless(self) -> bool:
        return not self.addresses and not self.prefixes

    def describe(self) -> str:
        parts = [a.address for a in self.addresses] + [f"prefix {p.prefix}" for p in self.prefixes]
        if self.dns:
            parts.append("dns " + " ".join(self.dns))
        return ", ".join(parts) or "no bindings"


def lease_from_reply(reply: m.Reply, now: float) -> Dhcp6Lease:
    addresses = tuple(reply.bound_addresses)
    prefixes = tuple(reply.bound_prefixes)
    bindings: list[m.IaAddress | m.IaPrefix] = [*addresses, *prefixes]
    lifetimes = [b.preferred for b in bindings]
    valids = [b.valid for b in bindings]
    shortest = min(lifetimes) if lifetimes else 0
    t1s = [ia.t1 for ia in (*reply.ia_na, *reply.ia_pd)
           if ia.status.code == m.SUCCESS and (ia.addresses or ia.prefixes) and ia.t1]
    t2s = [ia.t2 for ia in (*reply.ia_na, *reply.ia_pd)
           if ia.status.code == m.SUCCESS and (ia.addresses or ia.prefixes) and ia.t2]
    # RFC 8415 14.2: with T1/T2 left to the client, 0.5 and 0.8 of the shortest preferred time.
    t1 = float(min(t1s)) if t1s else 0.5 * shortest
    t2 = float(min(t2s)) if t2s else 0.8 * shortest
    valid = float(max(valids)) if valids else 0.0
    return Dhcp6Lease(reply.server_id, addresses, prefixes, reply.dns, reply.domains,
                      t1, max(t2, t1), valid, now)


LeaseHandler = Callable[[Dhcp6Lease | None], Awaitable[None]]


def _randomised(value: float, *, positive: bool = False) -> float:
    low = 0.0 if positive else -0.1
    return value + random.uniform(low, 0.1) * value


class Dhcp6Client:
    def __init__(self, ifname: str, ifindex: int, mac: str, on_lease: LeaseHandler, *,
                 stateful: bool) -> None:
        self.ifname = ifname
        self.ifindex = ifindex
        self.duid = m.duid_ll(mac)
        # The IAID must be stable across restarts: the MAC's last four bytes are.
        self.iaid = int.from_bytes(bytes.fromhex(mac.replace(":", ""))[-4:], "big")
        self.stateful = stateful
        self.lease: Dhcp6Lease | None = None
        self._on_lease = on_lease
        self._sock: socket.socket | None = None
        self._inbox: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    # --- socket -----------------------------------------------------------------------------------

    def _open(self) -> None:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # One socket per interface on the same port: each bound to its device.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                         struct.pack("i", self.ifindex))
            s.bind(("::", CLIENT_PORT))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._reader = asyncio.ensure_future(self._read_forever())

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                data, addr = await loop.sock_recvfrom(self._sock, 65535)
            except OSError as e:
                LOG.debug("dhcp6 %s: receive failed: %s", self.ifname, e)
                await asyncio.sleep(0.5)
                continue
            self._inbox.put_nowait((data, str(addr[0])))

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # The cancelled receive unregisters its fd only when the task has run: closing the
            # socket before would let that land on whatever socket reuses the fd number.
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, msg: m.Message) -> None:
        assert self._sock is not None
        try:
            self._sock.sendto(m.encode(msg), (ALL_SERVERS, SERVER_PORT, 0, self.ifindex))
            LOG.debug("dhcp6 %s: sent %s (xid %06x)", self.ifname, msg.name, msg.xid)
        except OSError as e:
            # E.g. EADDRNOTAVAIL while the link-local address is still tentative: the next
            # retransmission goes out once DAD is done.
            LOG.debug("dhcp6 %s: send %s failed: %s", self.ifname, msg.name, e)

    # --- one exchange with retransmission (RFC 8415 15) -------------------------------------------

    async def _exchange(self, msg_type: int, options: list[m.Option], *, irt: float, mrt: float,
                        mrc: int = 0, mrd: float | None = None,
                        accept: Callable[[m.Reply], bool] = lambda r: True,
                        collect_first: bool = False) -> m.Reply | None:
        xid = random.getrandbits(24)
        start = time.monotonic()
        deadline = start + mrd if mrd is not None else None
        rt = _randomised(irt, positive=collect_first)
        best: m.Reply | None = None
        attempt = 0
        while True:
            attempt += 1
            elapsed_cs = int((time.monotonic() - start) * 100) if attempt > 1 else 0
            self._send(m.Message(msg_type, xid, (
                (m.OPT_CLIENTID, self.duid), m.elapsed(elapsed_cs), *options)))
            until = time.monotonic() + rt
            if deadline is not None:
                until = min(until, deadline)
            while (left := until - time.monotonic()) > 0:
                try:
                    data, source = await asyncio.wait_for(self._inbox.get(), left)
                except TimeoutError:
                    break
                reply = self._parse(data, source, xid)
                if reply is None or not accept(reply):
                    continue
                if not collect_first or attempt > 1 or reply.preference == 255:
                    return reply
                # Solicit: gather Advertises during the first RT and take the most preferred.
                if best is None or reply.preference > best.preference:
                    best = reply
            if best is not None:
                return best
            if (mrc and attempt >= mrc) or (deadline is not None
                                            and time.monotonic() >= deadline):
                return None
            rt = _randomised(2 * rt)
            if mrt and rt > mrt:
                rt = _randomised(mrt)

    def _parse(self, data: bytes, source: str, xid: int) -> m.Reply | None:
        try:
            reply = m.parse_reply(m.decode(data))
        except m.Dhcp6ParseError as e:
            LOG.debug("dhcp6 %s: ignored packet from %s: %s", self.ifname, source, e)
            return None
        if reply.xid != xid:
            LOG.debug("dhcp6 %s: ignored %s with xid %06x", self.ifname,
                      m.MESSAGE_NAMES[reply.msg_type], reply.xid)
            return None
        if reply.client_id != self.duid:
            LOG.debug("dhcp6 %s: ignored %s for another client", self.ifname,
                      m.MESSAGE_NAMES[reply.msg_type])
            return None
        return reply

    # --- the client's life ------------------------------------------------------------------------

    def _ias(self, lease: Dhcp6Lease | None = None) -> list[m.Option]:
        addrs = [m.iaaddr(a.address) for a in lease.addresses] if lease else []
        prefixes = [m.iaprefix(p.prefix) for p in lease.prefixes] if lease else []
        return [m.ia_na(self.iaid, inner=addrs), m.ia_pd(self.iaid, inner=prefixes),
                m.oro(*WANTED_OPTIONS)]

    async def run(self) -> None:
        """Until cancelled; the socket closes on the way out."""
        self._open()
        try:
            if self.stateful:
                await self._run_stateful()
            else:
                await self._run_stateless()
        finally:
            await self._close()

    async def _run_stateless(self) -> None:
        while True:
            reply = await self._exchange(m.INFORMATION_REQUEST, [m.oro(*WANTED_OPTIONS)],
                                         irt=INF_TIMEOUT, mrt=INF_MAX_RT)
            assert reply is not None  # no MRC/MRD: retransmits until answered
            await self._set(lease_from_reply(reply, time.monotonic()))
            refresh = reply.information_refresh or IRT_DEFAULT
            await asyncio.sleep(max(refresh, IRT_MINIMUM))

    async def _run_stateful(self) -> None:
        while True:
            advert = await self._exchange(
                m.SOLICIT, self._ias(), irt=SOL_TIMEOUT, mrt=SOL_MAX_RT, collect_first=True,
                # RFC 8415 18.2.9: an Advertise with neither address nor prefix is ignored.
                accept=lambda r: bool(r.bound_addresses or r.bound_prefixes))
            assert advert is not None
            offered = lease_from_reply(advert, time.monotonic())
            LOG.debug("dhcp6 %s: advertised %s", self.ifname, offered.describe())
            reply = await self._exchange(
                m.REQUEST, [(m.OPT_SERVERID, advert.server_id), *self._ias(offered)],
                irt=REQ_TIMEOUT, mrt=REQ_MAX_RT, mrc=REQ_MAX_RC,
                accept=lambda r: r.status.code != m.UNSPEC_FAIL)
            if reply is None or not (reply.bound_addresses or reply.bound_prefixes):
                why = "no reply" if reply is None else reply.status.message or "nothing bound"
                LOG.debug("dhcp6 %s: request failed (%s); soliciting again", self.ifname, why)
                await asyncio.sleep(_randomised(SOL_TIMEOUT, positive=True))
                continue
            await self._set(lease_from_reply(reply, time.monotonic()))
            await self._keep()
            await self._set(None)

    async def _keep(self) -> None:
        """Renew at T1, rebind at T2, return when the bindings expire or the server drops them."""
        while (lease := self.lease) is not None:
            if lease.t1 >= m.INFINITY:
                await asyncio.Event().wait()  # infinite lease: nothing to renew, ever
            await _sleep_until(lease.obtained + lease.t1)
            renewed = await self._exchange(
                m.RENEW, [(m.OPT_SERVERID, lease.server_id), *self._ias(lease)],
                irt=REN_TIMEOUT, mrt=REN_MAX_RT,
                mrd=max(lease.obtained + lease.t2 - time.monotonic(), 0.1),
                accept=lambda r: r.server_id == lease.server_id)
            if renewed is None:
                renewed = await self._exchange(
                    m.REBIND, self._ias(lease), irt=REB_TIMEOUT, mrt=REB_MAX_RT,
                    mrd=max(lease.obtained + lease.valid - time.monotonic(), 0.1))
            if renewed is None or not (renewed.bound_addresses or renewed.bound_prefixes):
                LOG.info("dhcp6 %s: lease lost (%s)", self.ifname,
                         "no answer" if renewed is None else "server dropped the bindings")
                return
            await self._set(lease_from_reply(renewed, time.monotonic()))

    async def _set(self, lease: Dhcp6Lease | None) -> None:
        self.lease = lease
        await self._on_lease(lease)

    async def release(self, timeout: float = REL_TIMEOUT) -> bool:
        """Give the bindings back (RFC 8415 18.2.7); bounded, as it runs at shutdown."""
        lease = self.lease
        if lease is None or lease.stateless:
            return False
        opened = self._sock is None
        if opened:
            self._open()
        try:
            reply = await self._exchange(
                m.RELEASE, [(m.OPT_SERVERID, lease.server_id), *self._ias(lease)[:2]],
                irt=REL_TIMEOUT, mrt=0, mrc=2, mrd=timeout)
        finally:
            if opened:
                await self._close()
        self.lease = None
        return reply is not None


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
