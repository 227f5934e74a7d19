"""DHCPv6 messages (RFC 8415): encode what a client sends, decode what servers answer.

pyroute2 has no DHCPv6, so this is ours. A message is kept as its type, transaction id and the
list of top-level options as raw (code, payload) pairs, so `encode(decode(b)) == b` for any
message that decodes; `parse_reply` then reads the options a client acts on. Only
Dhcp6ParseError leaves `decode` and `parse_reply`, whatever the bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from init.net import dnsname

# Message types (RFC 8415 7.3)
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
RECONFIGURE, INFORMATION_REQUEST = 10, 11
MESSAGE_NAMES = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW",
                 6: "REBIND", 7: "REPLY", 8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE",
                 11: "INFORMATION-REQUEST", 12: "RELAY-FORW", 13: "RELAY-REPL"}

# Option codes (RFC 8415 21, RFC 3646)
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IA_TA, OPT_IAADDR, OPT_ORO = 1, 2, 3, 4, 5, 6
OPT_PREFERENCE, OPT_ELAPSED_TIME, OPT_STATUS_CODE, OPT_RAPID_COMMIT = 7, 8, 13, 14
OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_IA_PD, OPT_IAPREFIX = 23, 24, 25, 26
OPT_INFORMATION_REFRESH_TIME, OPT_SOL_MAX_RT = 32, 82

# Status codes (RFC 8415 21.13)
SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST = range(6)
NO_PREFIX_AVAIL = 6

INFINITY = 0xFFFFFFFF
MAX_MESSAGE = 65535 - 8  # a UDP payload


class Dhcp6ParseError(ValueError):
    """Bytes that are not a usable DHCPv6 message; the message says why."""


Option = tuple[int, bytes]


@dataclass(frozen=True)
class Message:
    msg_type: int
    xid: int  # 24 bits
    options: tuple[Option, ...] = ()

    def get(self, code: int) -> bytes | None:
        return next((data for c, data in self.options if c == code), None)

    def all(self, code: int) -> Iterator[bytes]:
        return (data for c, data in self.options if c == code)

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.msg_type, str(self.msg_type))


def encode_options(options: Sequence[Option]) -> bytes:
    return b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)


def encode(msg: Message) -> bytes:
    if not 0 <= msg.xid < 1 << 24:
        raise ValueError(f"transaction id {msg.xid:#x} is not 24 bits")
    return bytes([msg.msg_type]) + msg.xid.to_bytes(3, "big") + encode_options(msg.options)


def decode_options(data: bytes) -> tuple[Option, ...]:
    options: list[Option] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise Dhcp6ParseError(f"truncated option header at offset {offset}")
        code, length = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + length > len(data):
            raise Dhcp6ParseError(f"option {code} of {length} bytes runs past the end")
        options.append((code, data[offset:offset + length]))
        offset += length
    return tuple(options)


def decode(data: bytes) -> Message:
    if len(data) < 4:
        raise Dhcp6ParseError(f"{len(data)} bytes are too short for DHCPv6")
    if len(data) > MAX_MESSAGE:
        raise Dhcp6ParseError(f"{len(data)} bytes are too long for DHCPv6")
    if data[0] in (12, 13):
        raise Dhcp6ParseError("relay messages are not for a client")
    return Message(data[0], int.from_bytes(data[1:4], "big"), decode_options(data[4:]))


# --- options a client builds ------------------------------------------------------------------

def duid_ll(mac: str) -> bytes:
    """DUID-LL (type 3, hardware type 1): stable for a MAC, needs no clock or storage."""
    return struct.pack("!HH", 3, 1) + bytes.fromhex(mac.replace(":", ""))


def ia_na(iaid: int, t1: int = 0, t2: int = 0, inner: Sequence[Option] = ()) -> Option:
    return OPT_IA_NA, struct.pack("!III", iaid, t1, t2) + encode_options(inner)


def ia_pd(iaid: int, t1: int = 0, t2: int = 0, inner: Sequence[Option] = ()) -> Option:
    return OPT_IA_PD, struct.pack("!III", iaid, t1, t2) + encode_options(inner)


def iaaddr(address: str, preferred: int = 0, valid: int = 0) -> Option:
    return OPT_IAADDR, ipaddress.IPv6Address(address).packed + struct.pack("!II", preferred, valid)


def iaprefix(prefix: str, preferred: int = 0, valid: int = 0) -> Option:
    net = ipaddress.IPv6Network(prefix)
    return OPT_IAPREFIX, (struct.pack("!IIB", preferred, valid, net.prefixlen)
                          + net.network_address.packed)


def oro(*codes: int) -> Option:
    return OPT_ORO, b"".join(struct.pack("!H", c) for c in codes)


def elapsed(centiseconds: int) -> Option:
    return OPT_ELAPSED_TIME, struct.pack("!H", min(max(centiseconds, 0), 0xFFFF))


# --- what a server's answer says ----------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    code: int = SUCCESS
    message: str = ""


@dataclass(frozen=True)
class Lifetime:
    preferred: int
    valid: int


@dataclass(frozen=True)
class IaAddress:
    address: str
    preferred: int
    valid: int


@dataclass(frozen=True)
class IaPrefix:
    prefix: str  # "2001:db8:1::/56"
    preferred: int
    valid: int


@dataclass(frozen=True)
class Ia:
    """An IA_NA (addresses) or IA_PD (prefixes) with its timers and status."""

    iaid: int
    t1: int
    t2: int
    addresses: tuple[IaAddress, ...] = ()
    prefixes: tuple[IaPrefix, ...] = ()
    status: Status = Status()


@dataclass(frozen=True)
class Reply:
    """The parts of an ADVERTISE or REPLY a client acts on."""

    msg_type: int
    xid: int
    server_id: bytes
    client_id: bytes | None
    status: Status = Status()
    preference: int = 0
    rapid_commit: bool = False
    ia_na: tuple[Ia, ...] = ()
    ia_pd: tuple[Ia, ...] = ()
    dns: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    information_refresh: int | None = None
    sol_max_rt: int | None = None
    options: tuple[Option, ...] = field(default=(), repr=False)

    @property
    def bound_addresses(self) -> list[IaAddress]:
        return [a for ia in self.ia_na if ia.status.code == SUCCESS for a in ia.addresses
                if a.valid > 0]

    @property
    def bound_prefixes(self) -> list[IaPrefix]:
        return [p for ia in self.ia_pd if ia.status.code == SUCCESS for p in ia.prefixes
                if p.valid > 0]


def _status(data: bytes) -> Status:
    if len(data) < 2:
        raise Dhcp6ParseError("status code option shorter than 2 bytes")
    return Status(struct.unpack_from("!H", data)[0], data[2:].decode("utf-8", "replace"))


def _ia(data: bytes, *, prefix: bool) -> Ia:
    kind = "IA_PD" if prefix else "IA_NA"
    if len(data) < 12:
        raise Dhcp6ParseError(f"{kind} shorter than 12 bytes")
    iaid, t1, t2 = struct.unpack_from("!III", data)
    addresses: list[IaAddress] = []
    prefixes: list[IaPrefix] = []
    status = Status()
    for code, inner in decode_options(data[12:]):
        if code == OPT_STATUS_CODE:
            status = _status(inner)
        elif code == OPT_IAADDR and not prefix:
            if len(inner) < 24:
                raise Dhcp6ParseError("IAADDR shorter than 24 bytes")
            pref, valid = struct.unpack_from("!II", inner, 16)
            if pref > valid:  # RFC 8415 21.6: the client discards such an address
                continue
            addresses.append(IaAddress(str(ipaddress.IPv6Address(inner[:16])), pref, valid))
        elif code == OPT_IAPREFIX and prefix:
            if len(inner) < 25:
                raise Dhcp6ParseError("IAPREFIX shorter than 25 bytes")
            pref, valid, plen = struct.unpack_from("!IIB", inner)
            if plen > 128:
                raise Dhcp6ParseError(f"prefix length {plen}")
            if pref > valid:
                continue
            net = ipaddress.IPv6Network((inner[9:25], plen), strict=False)
            prefixes.append(IaPrefix(str(net), pref, valid))
    return Ia(iaid, t1, t2, tuple(addresses), tuple(prefixes), status)


def parse_reply(msg: Message) -> Reply:
    """Read an ADVERTISE or REPLY; Dhcp6ParseError for anything else or anything malformed."""
    if msg.msg_type not in (ADVERTISE, REPLY):
        raise Dhcp6ParseError(f"{msg.name} is not an answer to a client")
    server_id = msg.get(OPT_SERVERID)
    if not server_id:
        raise Dhcp6ParseError(f"{msg.name} without a server identifier")
    status = Status()
    preference = 0
    ia_na_list: list[Ia] = []
    ia_pd_list: list[Ia] = []
    dns: list[str] = []
    domains: list[str] = []
    refresh: int | None = None
    sol_max_rt: int | None = None
    for code, data in msg.options:
        if code == OPT_STATUS_CODE:
            status = _status(data)
        elif code == OPT_PREFERENCE:
            if len(data) != 1:
                raise Dhcp6ParseError("preference option is not 1 byte")
            preference = data[0]
        elif code == OPT_IA_NA:
            ia_na_list.append(_ia(data, prefix=False))
        elif code == OPT_IA_PD:
            ia_pd_list.append(_ia(data, prefix=True))
        elif code == OPT_DNS_SERVERS:
            if len(data) % 16:
                raise Dhcp6ParseError("DNS servers option is not a list of addresses")
            dns += [str(ipaddress.IPv6Address(data[i:i + 16])) for i in range(0, len(data), 16)]
        elif code == OPT_DOMAIN_LIST:
            try:
                domains += dnsname.decode_names(data, compression=False)
            except dnsname.DnsNameError as e:
                raise Dhcp6ParseError(f"domain list: {e}") from None
        elif code == OPT_INFORMATION_REFRESH_TIME and len(data) == 4:
            refresh = struct.unpack("!I", data)[0]
        elif code == OPT_SOL_MAX_RT and len(data) == 4:
            sol_max_rt = struct.unpack("!I", data)[0]
    return Reply(msg.msg_type, msg.xid, server_id, msg.get(OPT_CLIENTID), status, preference,
                 msg.get(OPT_RAPID_COMMIT) is not None, tuple(ia_na_list), tuple(ia_pd_list),
                 tuple(dns), tuple(domains), refresh, sol_max_rt, msg.options)
