"""DHCPv4, DHCPv6 and RA encode/decode against packets recorded from real servers (dnsmasq,
Kea, radvd: tests/fixtures/net/record.py), and the defences against bad packets."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from init.net import dhcp4
from init.net.ipv6 import dhcp6msg as m
from init.net.ipv6 import ra

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "net"


def fixture(name: str) -> bytes:
    return bytes.fromhex((FIXTURES / f"{name}.hex").read_text().strip())


# --- DHCPv4 (dnsmasq) -------------------------------------------------------------------------

def test_dnsmasq_offer_and_ack_decode() -> None:
    for name, kind in (("dnsmasq-dhcp4-offer", "OFFER"), ("dnsmasq-dhcp4-ack", "ACK")):
        msg = dhcp4.parse_frame(fixture(name))
        assert msg.message_type.name == kind
        assert msg.ip_src == "10.77.0.1"
        info = dhcp4.info_from_ack(msg.dhcp)
        assert info.address.network == ipaddress.IPv4Network("10.77.0.0/24")
        assert info.routers == ("10.77.0.1",)
        assert info.dns == ("10.77.0.53",)
        assert info.search == ("test.example", "example")  # option 119, RFC 1035 compressed
        assert info.mtu == 1400
        assert info.lease_seconds == 120
        assert info.server_id == "10.77.0.1"


def test_ack_answers_our_request() -> None:
    """The recorded REQUEST is ours; the server's ACK carries its xid and our MAC."""
    request = fixture("dnsmasq-dhcp4-request")
    ack = dhcp4.parse_frame(fixture("dnsmasq-dhcp4-ack"))
    our_mac = ":".join(f"{b:02x}" for b in request[6:12])
    assert str(ack.dhcp["chaddr"]) == our_mac
    # xid: 4 bytes at BOOTP offset 4 (after Ethernet 14 + IP 20 + UDP 8)
    assert int(ack.dhcp["xid"]) >> 4 == struct.unpack_from("!I", request, 46)[0] >> 4


def test_our_discover_encodes_what_dnsmasq_understood() -> None:
    """Re-encode our DISCOVER with pyroute2's encoder and compare to what went on the wire."""
    from pyroute2.dhcp.dhcp4msg import dhcp4msg

    frame = fixture("dnsmasq-dhcp4-discover")
    payload = frame[14 + 20 + 8:]
    msg = dhcp4msg(buf=payload).decode()
    options = msg["options"]
    assert options["message_type"] == 1
    assert options["vendor_id"] == "mvirt-one"
    assert 119 in options["parameter_list"] and 26 in options["parameter_list"]
    again = dhcp4msg({k: msg[k] for k in ("op", "htype", "hlen", "hops", "xid", "secs",
                                           "flags", "ciaddr", "yiaddr", "siaddr", "giaddr",
                                           "chaddr")} | {"options": options}).encode().buf
    assert again.rstrip(b"\0") == payload.rstrip(b"\0")


def _frame_with(payload_edit: bytes | None = None, *, sport: int = 67, dport: int = 68,
                ethertype: int = 0x0800) -> bytes:
    frame = bytearray(fixture("dnsmasq-dhcp4-ack"))
    struct.pack_into("!H", frame, 12, ethertype)
    struct.pack_into("!HH", frame, 34, sport, dport)
    if payload_edit is not None:
        frame[42:42 + len(payload_edit)] = payload_edit
    return bytes(frame)


@pytest.mark.parametrize("frame, why", [
    (b"", "too short"),
    (fixture("dnsmasq-dhcp4-ack")[:200], "too short"),
    (_frame_with(ethertype=0x86DD), "not IPv4"),
    (_frame_with(sport=53), "ports"),
    (_frame_with(b"\x01"), "not a reply"),  # op BOOTREQUEST
    (fixture("dnsmasq-dhcp4-discover"), "ports"),  # our own, 68 -> 67
])
def test_bad_frames_are_refused(frame: bytes, why: str) -> None:
    with pytest.raises(dhcp4.Dhcp4ParseError, match=why):
        dhcp4.parse_frame(frame)


def test_missing_message_type_is_refused() -> None:
    frame = bytearray(fixture("dnsmasq-dhcp4-ack"))
    options = 42 + 240
    assert frame[options] == 53  # dnsmasq puts the message type first
    frame[options] = 200  # an unknown option of the same length: no message type at all
    with pytest.raises(dhcp4.Dhcp4ParseError, match="undecodable"):
        dhcp4.parse_frame(bytes(frame))


def test_frame_with_ip_options_is_read_at_the_right_offset() -> None:
    """pyroute2's own decoder assumes a 20-byte IP header; ours honours IHL."""
    frame = fixture("dnsmasq-dhcp4-ack")
    ip = bytearray(frame[14:34])
    ip[0] = 0x46  # IHL 6: 4 bytes of options (NOPs)
    total = struct.unpack_from("!H", ip, 2)[0] + 4
    struct.pack_into("!H", ip, 2, total)
    longer = frame[:14] + bytes(ip) + b"\x01\x01\x01\x01" + frame[34:]
    assert dhcp4.parse_frame(longer).dhcp["yiaddr"] == dhcp4.parse_frame(frame).dhcp["yiaddr"]


# --- DHCPv6 (dnsmasq: addresses; Kea: addresses + prefix delegation) ---------------------------

DHCP6 = ["dnsmasq-dhcp6-solicit", "dnsmasq-dhcp6-advertise", "dnsmasq-dhcp6-request",
         "dnsmasq-dhcp6-reply", "dnsmasq-dhcp6-release", "kea-dhcp6-solicit",
         "kea-dhcp6-advertise", "kea-dhcp6-request", "kea-dhcp6-reply", "kea-dhcp6-renew",
         "kea-dhcp6-release"]


@pytest.mark.parametrize("name", DHCP6)
def test_dhcp6_roundtrip(name: str) -> None:
    raw = fixture(name)
    assert m.encode(m.decode(raw)) == raw


def test_dnsmasq_reply() -> None:
    solicit = m.decode(fixture("dnsmasq-dhcp6-solicit"))
    reply = m.parse_reply(m.decode(fixture("dnsmasq-dhcp6-reply")))
    assert reply.client_id == solicit.get(m.OPT_CLIENTID)
    # The address dnsmasq advertised, which the request asked for and the reply binds.
    advertised = m.parse_reply(m.decode(fixture("dnsmasq-dhcp6-advertise")))
    assert [a.address for a in advertised.bound_addresses] == ["2001:db8:77::107"]
    assert [a.address for a in reply.bound_addresses] == ["2001:db8:77::107"]
    assert reply.bound_addresses and reply.bound_addresses[0].valid == 120
    assert reply.dns == ("2001:db8:77::53",)
    assert reply.domains == ("v6.example",)


def test_kea_advertise_and_reply_delegate_a_prefix() -> None:
    for name in ("kea-dhcp6-advertise", "kea-dhcp6-reply"):
        reply = m.parse_reply(m.decode(fixture(name)))
        assert len(reply.bound_addresses) == 1
        (prefix,) = reply.bound_prefixes
        net = ipaddress.IPv6Network(prefix.prefix)
        assert net.prefixlen == 56 and net.subnet_of(ipaddress.IPv6Network("2001:db8:7800::/40"))
        assert (reply.ia_na[0].t1, reply.ia_na[0].t2) == (4, 6)
        assert reply.dns == ("2001:db8:77::35",)
        assert reply.domains == ("pd.example",)


def test_our_solicit_asks_for_addresses_prefixes_and_dns() -> None:
    solicit = m.decode(fixture("kea-dhcp6-solicit"))
    assert solicit.msg_type == m.SOLICIT
    codes = [c for c, _ in solicit.options]
    assert {m.OPT_CLIENTID, m.OPT_ELAPSED_TIME, m.OPT_IA_NA, m.OPT_IA_PD, m.OPT_ORO} <= set(codes)
    oro = solicit.get(m.OPT_ORO)
    assert oro is not None
    assert m.OPT_DNS_SERVERS in struct.unpack(f"!{len(oro) // 2}H", oro)


def test_built_messages_match_the_recorded_ones() -> None:
    """Our builders produce byte-for-byte what went on the wire to Kea."""
    recorded = m.decode(fixture("kea-dhcp6-solicit"))
    duid = recorded.get(m.OPT_CLIENTID)
    assert duid is not None and duid[:4] == b"\x00\x03\x00\x01"
    mac = ":".join(f"{b:02x}" for b in duid[4:])
    iaid = int.from_bytes(duid[-4:], "big")
    elapsed = recorded.get(m.OPT_ELAPSED_TIME)  # the first capture may be a retransmission
    assert elapsed is not None
    built = m.Message(m.SOLICIT, recorded.xid, (
        (m.OPT_CLIENTID, m.duid_ll(mac)), m.elapsed(int.from_bytes(elapsed, "big")),
        m.ia_na(iaid), m.ia_pd(iaid),
        m.oro(m.OPT_DNS_SERVERS, m.OPT_DOMAIN_LIST, m.OPT_INFORMATION_REFRESH_TIME)))
    assert m.encode(built) == fixture("kea-dhcp6-solicit")


@pytest.mark.parametrize("data, why", [
    (b"\x07\x00", "too short"),
    (b"\x07\x00\x00\x01\x00\x02\x00\x09ab", "runs past"),
    (b"\x07\x00\x00\x01\x00", "truncated option"),
    (b"\x0c" + bytes(40), "relay"),
])
def test_bad_dhcp6_messages_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(m.Dhcp6ParseError, match=why):
        m.parse_reply(m.decode(data))


def test_reply_without_server_id_is_refused() -> None:
    msg = m.decode(fixture("kea-dhcp6-reply"))
    stripped = m.Message(msg.msg_type, msg.xid,
                         tuple(o for o in msg.options if o[0] != m.OPT_SERVERID))
    with pytest.raises(m.Dhcp6ParseError, match="server identifier"):
        m.parse_reply(stripped)


def test_no_addrs_avail_binds_nothing() -> None:
    msg = m.Message(m.ADVERTISE, 1, ((m.OPT_SERVERID, b"\0\3\0\1abcdef"), m.ia_na(
        7, inner=[(m.OPT_STATUS_CODE, b"\x00\x02no addresses")])))
    reply = m.parse_reply(m.decode(m.encode(msg)))
    assert reply.ia_na[0].status.code == m.NO_ADDRS_AVAIL
    assert reply.bound_addresses == []


# --- router advertisements (dnsmasq, radvd) ----------------------------------------------------

def test_dnsmasq_ra() -> None:
    advert = ra.parse(fixture("dnsmasq-ra"), "fe80::1")
    assert advert.managed and advert.other
    assert advert.router_lifetime > 0
    assert any(p.prefix == "2001:db8:77::/64" for p in advert.prefixes)


def test_radvd_ra_rdnss_and_dnssl() -> None:
    advert = ra.parse(fixture("radvd-ra"), "fe80::1")
    assert advert.managed and advert.other
    assert advert.dns == ("2001:db8:77::53",)
    assert advert.search == ("ra.example",)
    assert advert.prefixes[0].autonomous and advert.prefixes[0].on_link


@pytest.mark.parametrize("source, hop_limit, why", [
    ("2001:db8::1", 255, "not link-local"),
    ("fe80::1", 64, "hop limit"),
])
def test_ra_from_off_link_is_refused(source: str, hop_limit: int, why: str) -> None:
    with pytest.raises(ra.RaParseError, match=why):
        ra.parse(fixture("radvd-ra"), source, hop_limit)


def test_ra_with_zero_length_option_is_refused() -> None:
    data = fixture("radvd-ra")[:16] + b"\x19\x00" + bytes(6)
    with pytest.raises(ra.RaParseError, match="length 0"):
        ra.parse(data, "fe80::1")
