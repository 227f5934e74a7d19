"""The netlink codec against answers recorded from the kernel (tests/fixtures/netlink/record.py),
and its defences against bytes that are not what they claim to be."""

from __future__ import annotations

import errno
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from init.net import genl, netinfo, netlink, rtnl
from init.net.netinfo import Gateway
from init.net.netlink import NetlinkDecodeError, NetlinkError
from init.system import power_button

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "netlink"
AF4, AF6 = socket.AF_INET, socket.AF_INET6
IFA_F_NOPREFIXROUTE = 0x200


def datagrams(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (FIXTURES / f"{name}.hex").read_text().split()]


def messages(name: str) -> list[netlink.Message]:
    """The data messages of a recorded answer: what comes before NLMSG_DONE."""
    out = [m for d in datagrams(name) for m in netlink.parse_messages(d)]
    assert out[-1].type == netlink.NLMSG_DONE
    return out[:-1]


def test_link_dump_spanning_datagrams() -> None:
    links = [rtnl.decode_link(m) for m in messages("rtnl-links")]
    assert len(datagrams("rtnl-links")) > 1
    assert [(m["index"], m["IFLA_IFNAME"]) for m in links] == [(1, "lo"), (2, "veth1"),
                                                              (3, "veth0")]
    lo, _, veth0 = links
    assert (lo["ifi_type"], lo["IFLA_ADDRESS"], lo.get("IFLA_LINKINFO")) == \
        (772, "00:00:00:00:00:00", None)
    assert (veth0["ifi_type"], veth0["IFLA_ADDRESS"], veth0["IFLA_MTU"]) == \
        (1, "52:54:00:12:34:56", 1400)
    assert veth0["IFLA_LINKINFO"] == {"IFLA_INFO_KIND": "veth"}
    assert veth0["flags"] & 0x10001 == 0x10001  # IFF_UP, IFF_LOWER_UP
    assert netinfo.link_of(veth0) == netinfo.Link(3, "veth0", "52:54:00:12:34:56", False)
    assert netinfo.link_of(lo).loopback


def test_address_dump() -> None:
    addrs = [rtnl.decode_address(m) for m in messages("rtnl-addrs")]
    v4 = next(a for a in addrs if a.get("IFA_LOCAL") == "10.77.0.5")
    assert (v4["family"], v4["prefixlen"], v4["index"], v4["IFA_BROADCAST"]) == \
        (AF4, 24, 3, "10.77.0.255")
    v6 = next(a for a in addrs if a["IFA_ADDRESS"] == "2001:db8:77::5")
    assert "IFA_LOCAL" not in v6  # IPv6 has no peer: the kernel sends IFA_ADDRESS only
    assert v6["IFA_FLAGS"] & IFA_F_NOPREFIXROUTE and not v6["flags"] & IFA_F_NOPREFIXROUTE
    assert netinfo.address_of(v6) == netinfo.Address(3, AF6, "2001:db8:77::5", 64, 0,
                                                     v6["IFA_FLAGS"])


def test_route_dump_with_a_multipath_default() -> None:
    routes = [rtnl.decode_route(m) for m in messages("rtnl-routes4")]
    gateways = [g for r in routes for g in netinfo.gateways_of(r)]
    assert sorted(gateways) == sorted([Gateway(AF4, 3, "10.77.0.2", 7),
                                       Gateway(AF4, 2, "10.78.0.2", 7),
                                       Gateway(AF4, 3, "10.77.0.1", 1026)])
    local = [r for r in routes if r["table"] == 255]
    assert local and all(r["RTA_DST"] for r in local)


def test_kernel_error_with_its_reason() -> None:
    (msg,) = netlink.parse_messages(datagrams("rtnl-error")[0])
    error = netlink.error_of(msg)
    assert isinstance(error, OSError) and isinstance(error, NetlinkError)
    assert error.errno == errno.ENETUNREACH
    assert "Nexthop has invalid gateway" in str(error)


def test_ack_is_no_error() -> None:
    ack = netlink.pack_message(netlink.NLMSG_ERROR, 0, 1, struct.pack("=i", 0) + bytes(16))
    assert netlink.error_of(netlink.parse_messages(ack)[0]) is None


def test_generic_netlink_family() -> None:
    msg = netlink.parse_messages(datagrams("genl-nlctrl")[0])[0]
    assert genl.decode_family(msg) == genl.Family(genl.GENL_ID_CTRL, {"notify": 0x10})


# A ThinkPad hotkey event as the kernel sent it (pyroute2's acpi_event sample, from a real
# machine): struct acpi_genl_event aligns its two u32s after the 15-byte bus id.
THINKPAD_HOTKEY = bytes.fromhex(
    "44000000 1b000000 9b8b0000 00000000 01010000 30000100 69626d2f 686f746b"
    "65790000 00000000 00000000 4c454e30 3236383a 30300000 00000000 80000000"
    "18130000")


def test_acpi_event_decodes_with_the_kernel_layout() -> None:
    (msg,) = netlink.parse_messages(THINKPAD_HOTKEY)
    event = power_button.decode_event(genl.decode(msg))
    assert event == power_button.AcpiEvent(b"ibm/hotkey", b"LEN0268:00", 0x80, 0x1318)


def test_power_button_event_shape() -> None:
    raw = power_button.EVENT.pack(b"button/power", b"LNXPWRBN:00", 0x80, 1)
    event = genl.Event(power_button.ACPI_GENL_CMD_EVENT, {power_button.ACPI_GENL_ATTR_EVENT: raw})
    decoded = power_button.decode_event(event)
    assert decoded is not None and decoded.device_class.startswith(power_button.POWER)
    assert power_button.decode_event(genl.Event(1, {1: raw[:20]})) is None  # too short
    assert power_button.decode_event(genl.Event(2, {1: raw})) is None  # another command


def test_attributes_pad_to_four_bytes_and_nest() -> None:
    inner = netlink.attr_str(1, "veth")  # 4 + 5 bytes, padded to 12
    assert len(inner) == 12 and inner.endswith(bytes(3))
    outer = netlink.attr(rtnl.IFLA_LINKINFO, inner) + netlink.attr_u32(rtnl.IFLA_MTU, 9000)
    assert list(netlink.iter_attrs(outer)) == [(rtnl.IFLA_LINKINFO, inner),
                                               (rtnl.IFLA_MTU, struct.pack("=I", 9000))]
    msg = netlink.Message(rtnl.RTM_NEWLINK, 0, 0, rtnl.IFINFOMSG.pack(0, 1, 4, 0, 0) + outer)
    assert rtnl.decode_link(msg)["IFLA_LINKINFO"] == {"IFLA_INFO_KIND": "veth"}


@pytest.mark.parametrize("name", ["rtnl-links", "rtnl-addrs", "rtnl-routes4", "genl-nlctrl"])
def test_truncated_datagrams_are_a_clear_error(name: str) -> None:
    data = datagrams(name)[0]
    boundaries, offset = set(), 0
    while offset < len(data):
        boundaries.add(offset)
        offset += netlink.align(struct.unpack_from("=I", data, offset)[0])
    for cut in range(1, len(data)):
        if cut in boundaries:
            continue
        with pytest.raises(NetlinkDecodeError):
            netlink.parse_messages(data[:cut])


def test_wrong_message_type_and_bad_attribute_sizes() -> None:
    link = messages("rtnl-links")[0]
    with pytest.raises(NetlinkDecodeError, match="type 16 where 20"):
        rtnl.decode_address(link)
    with pytest.raises(NetlinkDecodeError, match="shorter than its"):
        rtnl.decode_route(netlink.Message(rtnl.RTM_NEWROUTE, 0, 0, bytes(8)))
    bad_mtu = rtnl.IFINFOMSG.pack(0, 1, 4, 0, 0) + netlink.attr(rtnl.IFLA_MTU, b"\x01\x02")
    with pytest.raises(NetlinkDecodeError, match="u32 attribute of 2 bytes"):
        rtnl.decode_link(netlink.Message(rtnl.RTM_NEWLINK, 0, 0, bad_mtu))
    bad_gw = rtnl.RTMSG.pack(2, 0, 0, 0, 254, 0, 0, 1, 0) + netlink.attr(rtnl.RTA_GATEWAY, b"\1")
    with pytest.raises(NetlinkDecodeError, match="IP address attribute of 1 bytes"):
        rtnl.decode_route(netlink.Message(rtnl.RTM_NEWROUTE, 0, 0, bad_gw))
    with pytest.raises(NetlinkDecodeError, match="NLMSG_ERROR of 4 bytes"):
        netlink.error_of(netlink.Message(netlink.NLMSG_ERROR, 0, 0, bytes(4)))


DECODERS = {rtnl.RTM_NEWLINK: rtnl.decode_link, rtnl.RTM_NEWADDR: rtnl.decode_address,
            rtnl.RTM_NEWROUTE: rtnl.decode_route, genl.GENL_ID_CTRL: genl.decode_family}
RECORDED = [d for name in ("rtnl-links", "rtnl-addrs", "rtnl-routes4", "genl-nlctrl")
            for d in datagrams(name)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RECORDED), st.integers(min_value=0), st.binary(min_size=1, max_size=4))
def test_corrupted_answers_raise_only_the_decode_error(data: bytes, where: int,
                                                       junk: bytes) -> None:
    at = where % len(data)
    corrupted = data[:at] + junk + data[at + len(junk):]
    try:
        for msg in netlink.parse_messages(corrupted):
            decoder = DECODERS.get(msg.type)
            if decoder is not None:
                decoder(msg)
    except NetlinkDecodeError:
        pass
