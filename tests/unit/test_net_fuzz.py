"""Property tests of the network parsers: whatever the bytes (or text), only the parser's own
error type may escape, and what decodes re-encodes to the same bytes."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from init.net import dhcp4, dnsname, static
from init.net.ipv6 import dhcp6msg as m
from init.net.ipv6 import ra

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "net"
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _fixture(name: str) -> bytes:
    return bytes.fromhex((FIXTURES / f"{name}.hex").read_text().strip())


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Real packets with bytes flipped, cut short or extended: the malformations that reach
    deep into a parser, which random bytes alone rarely do."""
    def apply(edits: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
        data = bytearray(seed)
        for pos, value in edits:
            data[pos % len(data)] = value
        return bytes(data[:cut]) + tail

    return st.builds(apply, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                     max_size=8),
                     st.integers(0, len(seed)), st.binary(max_size=16))


DHCP4_SEEDS = ["dnsmasq-dhcp4-offer", "dnsmasq-dhcp4-ack"]
DHCP6_SEEDS = ["dnsmasq-dhcp6-advertise", "dnsmasq-dhcp6-reply", "kea-dhcp6-advertise",
               "kea-dhcp6-reply"]
RA_SEEDS = ["dnsmasq-ra", "radvd-ra"]


def _frames() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=600),
                     *(mutated(_fixture(n)) for n in DHCP4_SEEDS))


@SETTINGS
@given(_frames())
def test_dhcp4_frames_raise_only_parse_errors(frame: bytes) -> None:
    try:
        msg = dhcp4.parse_frame(frame)
    except dhcp4.Dhcp4ParseError:
        return
    # What parses must also be usable by the lease code without surprises.
    # An unusable yiaddr is a ValueError: the ACK hook reports it, the client goes on.
    with contextlib.suppress(ValueError):
        dhcp4.info_from_ack(msg.dhcp)


@SETTINGS
@given(st.one_of(st.binary(max_size=300), *(mutated(_fixture(n)) for n in DHCP6_SEEDS)))
def test_dhcp6_raises_only_parse_errors_and_roundtrips(data: bytes) -> None:
    try:
        msg = m.decode(data)
    except m.Dhcp6ParseError:
        return
    assert m.encode(msg) == data
    with contextlib.suppress(m.Dhcp6ParseError):
        m.parse_reply(msg)


@SETTINGS
@given(st.one_of(st.binary(max_size=200), *(mutated(_fixture(n)) for n in RA_SEEDS)),
       st.sampled_from(["fe80::1", "2001:db8::1", "::", "not an address"]),
       st.sampled_from([255, 64, -1]))
def test_ra_raises_only_parse_errors(data: bytes, source: str, hop_limit: int) -> None:
    with contextlib.suppress(ra.RaParseError):
        ra.parse(data, source, hop_limit)


@SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_dns_names_raise_only_their_error(data: bytes, compression: bool) -> None:
    try:
        names = dnsname.decode_names(data, compression=compression)
    except dnsname.DnsNameError:
        return
    for name in names:
        assert name and " " not in name and "\n" not in name


@SETTINGS
@given(st.lists(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True),
                max_size=5))
def test_dns_names_roundtrip(names: list[str]) -> None:
    assert dnsname.decode_names(dnsname.encode_names(names), compression=False) == names


_IP_ALPHABET = "0123456789abcdef.:[]/ethdcpnoffauto6x-"


@SETTINGS
@given(st.one_of(st.text(max_size=80),
                 st.text(alphabet=_IP_ALPHABET, max_size=80),
                 st.lists(st.sampled_from(["10.0.0.2", "", "[2001:db8::2]", "24", "eth0",
                                           "off", "dhcp", "255.255.255.0", "host", "dhcp6",
                                           "[fe80::1]", "1.1.1.1", "64", "x" * 20]),
                          max_size=12).map(":".join)))
def test_ip_param_raises_only_its_error(value: str) -> None:
    try:
        param = static.parse(value)
    except static.IpParamError:
        return
    assert param.method in ("static", "dhcp", "ipv6", "off")
    if param.method == "static":
        assert param.address is not None
