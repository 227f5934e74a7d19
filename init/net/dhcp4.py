"""DHCPv4: pyroute2's asyncio client, hardened at its edges, and what a lease means to us.

pyroute2 (0.9) brings the RFC 2131 state machine (INIT/SELECTING/REQUESTING/BOUND/RENEWING/
REBINDING), xids, retransmission, lease timers (T1 renew, T2 rebind, expiry), NAK handling and
RELEASE on exit; we keep all of that. What it lacks, and this module adds:

- a receive path that never raises: its socket decodes frames assuming a 20-byte IP header and
  lets a reply without a message type crash the receiver task (the client then silently stops);
  `parse_frame` validates every layer and is the only decoder used, and replies for another
  chaddr are dropped (pyroute2 matches on xid only);
- sends and receives that survive a link going down (pyroute2 ends its sender task on ENETDOWN);
- leases kept in memory (its default writes JSON files into the working directory);
- options it does not decode: domain search (119, with RFC 1035 compression);
- a retransmission schedule starting at 1 s rather than 4 s: a microVM's boot waits on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from init.net import dnsname, pyroute2_light

pyroute2_light.install()
from pyroute2.dhcp.client import (  # noqa: E402  (below the light package on purpose)
    AsyncDHCPClient,
    ClientConfig,
    randomized_increasing_backoff,
)
from pyroute2.dhcp.dhcp4msg import dhcp4msg  # noqa: E402
from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket  # noqa: E402
from pyroute2.dhcp.enums import dhcp  # noqa: E402
from pyroute2.dhcp.hooks import Hook, Trigger  # noqa: E402
from pyroute2.dhcp.leases import Lease  # noqa: E402
from pyroute2.dhcp.messages import ReceivedDHCPMessage, SentDHCPMessage  # noqa: E402

LOG = logging.getLogger("mvirt-one")

ETH_HLEN = 14
ETH_P_IP = 0x0800
BOOTREPLY = 2
DHCP_FIXED_LEN = 240  # BOOTP header (236) + magic cookie
MAGIC_COOKIE = b"\x63\x82\x53\x63"
SERVER_PORT = 67
CLIENT_PORT = 68

REQUESTED = (
    dhcp.Option.SUBNET_MASK, dhcp.Option.ROUTER, dhcp.Option.NAME_SERVER,
    dhcp.Option.HOST_NAME, dhcp.Option.DOMAIN_NAME, dhcp.Option.DOMAIN_SEARCH,
    dhcp.Option.INTERFACE_MTU, dhcp.Option.BROADCAST_ADDRESS, dhcp.Option.LEASE_TIME,
    dhcp.Option.RENEWAL_TIME, dhcp.Option.REBINDING_TIME,
)


class Dhcp4ParseError(ValueError):
    """A frame is not a DHCP reply we can use; the message says why."""


def parse_frame(frame: bytes) -> ReceivedDHCPMessage:
    """Decode an Ethernet frame holding a DHCP reply (server port 67 → client port 68).

    Raises only Dhcp4ParseError, whatever the bytes.
    """
    if len(frame) < ETH_HLEN + 20 + 8 + DHCP_FIXED_LEN:
        raise Dhcp4ParseError(f"frame of {len(frame)} bytes is too short for DHCP")
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack_from("!H", frame, 12)[0]
    if ethertype != ETH_P_IP:
        raise Dhcp4ParseError(f"ethertype {ethertype:#06x} is not IPv4")
    ip = ETH_HLEN
    version, ihl = frame[ip] >> 4, (frame[ip] & 0x0F) * 4
    total_len, frag, proto = (struct.unpack_from("!H", frame, ip + 2)[0],
                              struct.unpack_from("!H", frame, ip + 6)[0], frame[ip + 9])
    if version != 4 or ihl < 20:
        raise Dhcp4ParseError(f"bad IPv4 header (version {version}, length {ihl})")
    if proto != socket.IPPROTO_UDP:
        raise Dhcp4ParseError(f"IP protocol {proto} is not UDP")
    if frag & 0x3FFF:
        raise Dhcp4ParseError("fragmented datagram")
    if total_len < ihl + 8 or ip + total_len > len(frame):
        raise Dhcp4ParseError(f"IP total length {total_len} does not fit the frame")
    udp = ip + ihl
    sport, dport, udp_len = struct.unpack_from("!HHH", frame, udp)
    if (sport, dport) != (SERVER_PORT, CLIENT_PORT):
        raise Dhcp4ParseError(f"UDP ports {sport}->{dport} are not DHCP server->client")
    if udp_len < 8 or udp + udp_len > ip + total_len:
        raise Dhcp4ParseError(f"UDP length {udp_len} does not fit the datagram")
    # Ethernet pads short frames: the UDP length, not the frame, says where DHCP ends.
    payload = frame[udp + 8:udp + udp_len]
    if len(payload) < DHCP_FIXED_LEN:
        raise Dhcp4ParseError(f"DHCP payload of {len(payload)} bytes is too short")
    if payload[236:240] != MAGIC_COOKIE:
        raise Dhcp4ParseError("no DHCP magic cookie")
    try:
        msg = dhcp4msg(buf=payload).decode()
        options = msg["options"]
        mtype = dhcp.MessageType(options["message_type"])
        op = msg["op"]
        str(msg["chaddr"]), int(msg["xid"])  # the client reads both: they must decode
    except Exception as e:  # pyroute2's decoder raises what it meets; we speak one error
        raise Dhcp4ParseError(f"undecodable DHCP message: {e!r}") from None
    if op != BOOTREPLY:
        raise Dhcp4ParseError(f"BOOTP op {op} is not a reply")
    if mtype not in (dhcp.MessageType.OFFER, dhcp.MessageType.ACK, dhcp.MessageType.NAK):
        raise Dhcp4ParseError(f"{mtype.name} is not for a client")
    return ReceivedDHCPMessage(
        dhcp=msg, eth_src=_mac(src), eth_dst=_mac(dst),
        ip_src=socket.inet_ntoa(frame[ip + 12:ip + 16]),
        ip_dst=socket.inet_ntoa(frame[ip + 16:ip + 20]), sport=sport, dport=dport)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass(frozen=True)
class Dhcp4Info:
    """What a lease gives the interface, validated; the manager applies and reports this."""

    address: ipaddress.IPv4Interface
    routers: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    hostname: str = ""
    mtu: int | None = None
    broadcast: str | None = None
    lease_seconds: int | None = None  # None: infinite
    server_id: str = ""
    obtained: float = field(default_factory=time.time)

    def describe(self) -> str:
        via = f" via {self.routers[0]}" if self.routers else ""
        lease = "infinite" if self.lease_seconds is None else f"{self.lease_seconds} s"
        return f"{self.address.with_prefixlen}{via} (dhcp from {self.server_id}, lease {lease})"


def info_from_ack(ack: Any, obtained: float | None = None) -> Dhcp4Info:
    """Turn a decoded ACK into Dhcp4Info; bad or missing options are left out, not fatal."""
    options: dict[str, Any] = ack.get("options") or {}
    address = ipaddress.IPv4Address(ack["yiaddr"])
    try:
        prefixlen = ipaddress.IPv4Network(f"0.0.0.0/{options['subnet_mask']}").prefixlen
    except (KeyError, ValueError, TypeError):
        # RFC 2131 leaves it to the client: the classful mask is what other clients assume.
        first = int(address) >> 24
        prefixlen = 8 if first < 128 else 16 if first < 192 else 24
    search: tuple[str, ...] = ()
    raw_search = options.get("domain_search")
    if isinstance(raw_search, list):
        try:
            search = tuple(dnsname.decode_names(bytes(raw_search), compression=True))
        except (dnsname.DnsNameError, ValueError) as e:
            LOG.debug("dhcp4: domain search option ignored: %s", e)
    lease_time = options.get("lease_time")
    mtu = options.get("interface_mtu")
    return Dhcp4Info(
        address=ipaddress.IPv4Interface(f"{address}/{prefixlen}"),
        routers=tuple(_ipv4s(options.get("router"))),
        dns=tuple(_ipv4s(options.get("name_server"))),
        domain=_text(options.get("domain_name")),
        search=search,
        hostname=_text(options.get("host_name")),
        mtu=mtu if isinstance(mtu, int) and 576 <= mtu <= 65535 else None,
        broadcast=next(iter(_ipv4s([options.get("broadcast_address")])), None),
        lease_seconds=lease_time if isinstance(lease_time, int) and lease_time >= 0 else None,
        server_id=next(iter(_ipv4s([options.get("server_id")])), ""),
        obtained=obtained if obtained is not None else time.time(),
    )


def _ipv4s(values: object) -> Iterator[str]:
    if not isinstance(values, list):
        return
    for v in values:
        try:
            yield str(ipaddress.IPv4Address(v))
        except (ValueError, TypeError):
            continue


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    value = value.strip().rstrip(".")
    # These end up in resolv.conf and sethostname(): nothing that could break a line or a word.
    return value if value.isprintable() and " " not in value and len(value) <= 253 else ""


class MemoryLease(Lease):  # type: ignore[misc]
    """A lease that lives as long as the client: a microVM's next boot starts afresh."""

    def dump(self) -> None:
        pass

    @classmethod
    def load(cls, interface: str) -> None:
        return None


class _HardenedSocket(AsyncDHCP4Socket):  # type: ignore[misc]
    """pyroute2's raw DHCP socket with a receive path that validates and never raises."""

    async def get(self) -> ReceivedDHCPMessage:
        while True:
            try:
                raw, where = await self.loop.sock_recvfrom(self, 4096)
            except OSError as e:
                # ENETDOWN while the link flaps: keep listening rather than end the client.
                LOG.debug("dhcp4 %s: receive failed (%s); retrying", self.ifname, e)
                await asyncio.sleep(0.5)
                continue
            if len(where) > 2 and where[2] == socket.PACKET_OUTGOING:
                # A packet socket sees what this VM sends too: a DHCP "reply" a container sent
                # (it may bind port 67 and learn our xid from the broadcasts) is not a server's.
                continue
            try:
                msg = parse_frame(raw)
            except Dhcp4ParseError as e:
                LOG.debug("dhcp4 %s: ignored frame: %s", self.ifname, e)
                continue
            chaddr = str(msg.dhcp["chaddr"]).lower()
            if chaddr != str(self.l2addr).lower():
                LOG.debug("dhcp4 %s: ignored %s for %s", self.ifname,
                          msg.message_type.name, chaddr)
                continue
            return msg

    async def put(self, msg: SentDHCPMessage) -> SentDHCPMessage:
        try:
            return await super().put(msg)
        except OSError as e:
            # Lost like any packet on the wire: retransmission will try again.
            LOG.debug("dhcp4 %s: send failed: %s", self.ifname, e)
            return msg


LeaseHandler = Callable[[Trigger, Dhcp4Info], Awaitable[None]]


class Dhcp4Client(AsyncDHCPClient):  # type: ignore[misc]
    """pyroute2's client on our socket; lease events go to `on_lease` as Dhcp4Info."""

    def __init__(self, interface: str, on_lease: LeaseHandler, *, hostname: str | None,
                 first_retransmit: float = 1.0) -> None:
        def backoff() -> Iterator[float]:
            delays: Iterator[float] = randomized_increasing_backoff(
                wait_first=first_retransmit, wait_max=32.0)
            return delays

        hooks = [Hook(func=self._hook_for(trigger), triggers={trigger}) for trigger in Trigger]
        config = ClientConfig(
            interface=interface, lease_type=MemoryLease, hooks=hooks,
            requested_parameters=REQUESTED, retransmission=backoff,
            handle_signals=False,  # PID 1 owns the signals; several clients would fight anyway
            vendor_id="mvirt-one", host_name=hostname, hook_timeout=10.0)
        super().__init__(config)
        self._sock = _HardenedSocket(interface)
        self._on_lease = on_lease

    def _hook_for(self, trigger: Trigger) -> Any:
        async def hook(lease: Lease) -> None:
            # pyroute2 logs a failing hook at error under its own logger, which we demote to
            # debug: a lease that cannot be applied must be seen, so say it here.
            try:
                await self._on_lease(trigger, info_from_ack(lease.ack, lease.obtained))
            except Exception as e:
                LOG.warning("dhcp4 %s: %s lease not applied: %r", self.config.interface,
                            trigger, e)

        hook.__name__ = f"mvirt_one_{trigger}"
        return hook

    async def _process_msg(self, msg: ReceivedDHCPMessage) -> None:
        try:
            await super()._process_msg(msg)
        except Exception as e:
            # A reply the state machine cannot take (e.g. an ACK without an address) must not
            # end the receiver task: that would stop the client for good.
            LOG.warning("dhcp4 %s: reply not used: %r", self.config.interface, e)


_QUIET = ("pyroute2.dhcp", "pyroute2.dhcp.client", "pyroute2.dhcp.dhcp4socket",
          "pyroute2.dhcp.hooks", "pyroute2.dhcp.leases", "pyroute2.dhcp.timers",
          "pyroute2.dhcp.fsm", "pyroute2.ext.rawsocket")


class _Demote(logging.Filter):
    """pyroute2's DHCP logs every packet at info and bad ones at error: for us they are debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return LOG.isEnabledFor(logging.DEBUG)


def quiet_library_logs() -> None:
    debug = LOG.isEnabledFor(logging.DEBUG)
    for name in _QUIET:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Demote) for f in logger.filters):
            logger.addFilter(_Demote())
        if debug:
            logger.setLevel(logging.DEBUG)
