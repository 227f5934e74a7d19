"""Our netlink against the real kernel, in network namespaces the tests create and enter (links,
addresses and routes are changed there, never on the host), plus the socket's defences against
a peer that answers late, wrongly or not at all. Root required."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from init.net import genl, links, loopback, netinfo, netlink
from init.net.netlink import NetlinkDecodeError, NetlinkError, NetlinkSocket
from init.system import power_button
from tests.fixtures import netlink as ns

pytestmark = pytest.mark.host

NETLINK_USERSOCK = 2


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root")
    with ns.inside() as name:
        yield name


@pytest.fixture
def veth(netns: str) -> tuple[str, int, int]:
    """veth0 (index returned, down) and its peer veth1 (up)."""
    ns.ip(netns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
    ns.ip(netns, "link", "set", "veth1", "up")
    return netns, socket.if_nametoindex("veth0"), socket.if_nametoindex("veth1")


def ip_json(name: str, *args: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(ns.ip(name, "-j", *args) or "[]")
    return out


def addr_info(name: str, family: str) -> list[dict[str, object]]:
    """veth0's addresses of a family, link-local ones left out (`ip` lists no link without)."""
    info = [a for link in ip_json(name, family, "addr", "show", "veth0")
            for a in link["addr_info"]]  # type: ignore[attr-defined]
    return [a for a in info if not str(a["local"]).startswith("fe80")]


def test_links_set_up_mtu_and_carrier(veth: tuple[str, int, int]) -> None:
    name, index, peer = veth
    found = asyncio.run(links.links())
    assert [(link.index, link.name) for link in found] == sorted([(1, "lo"), (peer, "veth1"),
                                                                (index, "veth0")])
    veth0 = next(link for link in found if link.name == "veth0")
    (shown,) = ip_json(name, "link", "show", "veth0")
    assert (veth0.mac, veth0.kind, veth0.arphrd) == (shown["address"], "veth", 1)
    assert not veth0.configurable  # a veth is a pod's, not PID 1's
    assert asyncio.run(links.link_by_name("veth0")) == veth0
    assert asyncio.run(links.link_by_name("nope")) is None

    assert not asyncio.run(links.wait_lower_up(index, 0.05))  # still down
    asyncio.run(links.set_up(index))
    asyncio.run(links.set_mtu(index, 1400))
    (shown,) = ip_json(name, "link", "show", "veth0")
    assert "UP" in shown["flags"] and shown["mtu"] == 1400  # type: ignore[operator]
    assert asyncio.run(links.wait_lower_up(index, 5.0))  # the peer is up: carrier


def test_addresses_replace_with_lifetimes_and_delete(veth: tuple[str, int, int]) -> None:
    name, index, _ = veth
    v4 = ipaddress.IPv4Interface("10.77.0.5/24")
    asyncio.run(links.replace_address(index, v4, valid=600, preferred=300,
                                      broadcast="10.77.0.255"))
    (a,) = addr_info(name, "-4")
    assert (a["local"], a["prefixlen"], a["broadcast"]) == ("10.77.0.5", 24, "10.77.0.255")
    assert 590 <= a["valid_life_time"] <= 600 and 290 <= a["preferred_life_time"] <= 300  # type: ignore[operator]
    # A renewal replaces the lifetimes (no EEXIST); a preferred beyond valid is capped.
    asyncio.run(links.replace_address(index, v4, valid=7200, preferred=99999))
    (a,) = addr_info(name, "-4")
    assert 7190 <= a["valid_life_time"] <= 7200 and a["preferred_life_time"] == a["valid_life_time"]  # type: ignore[operator]
    asyncio.run(links.replace_address(index, v4))  # no lifetimes: forever
    (a,) = addr_info(name, "-4")
    assert a["valid_life_time"] == links.FOREVER

    v6 = ipaddress.IPv6Interface("2001:db8:77::5/64")
    asyncio.run(links.replace_address(index, v6, noprefixroute=True))
    (a,) = addr_info(name, "-6")
    assert a["local"] == "2001:db8:77::5" and a.get("noprefixroute") is True
    assert not ip_json(name, "-6", "route", "show", "2001:db8:77::/64")
    assert ("2001:db8:77::5", 64) in [(addr, plen) for addr, plen, _ in
                                      asyncio.run(links.addresses(index, socket.AF_INET6))]
    assert asyncio.run(links.addresses(index, socket.AF_INET)) == [("10.77.0.5", 24, 0x80)]

    for _ in range(2):  # the second delete finds nothing: not an error
        asyncio.run(links.delete_address(index, v4))
        asyncio.run(links.delete_address(index, v6))
    assert addr_info(name, "-4") == [] and addr_info(name, "-6") == []


def test_default_routes_replace_onlink_and_delete(veth: tuple[str, int, int]) -> None:
    name, index, _ = veth
    asyncio.run(links.set_up(index))
    asyncio.run(links.replace_address(index, ipaddress.IPv4Interface("10.77.0.5/24")))
    asyncio.run(links.replace_address(index, ipaddress.IPv6Interface("2001:db8:77::5/64")))
    for _ in range(2):  # replace: the second is an update, not EEXIST
        asyncio.run(links.replace_default_route(index, "10.77.0.1"))
    (route,) = ip_json(name, "-4", "route", "show", "default")
    assert (route["gateway"], route["dev"], route["metric"]) == \
        ("10.77.0.1", "veth0", links.metric(index))
    assert route["protocol"] == "static"

    asyncio.run(links.delete_default_route(index, "10.77.0.1"))
    asyncio.run(links.replace_default_route(index, "192.0.2.1", onlink=True))
    (route,) = ip_json(name, "-4", "route", "show", "default")
    assert route["gateway"] == "192.0.2.1" and "onlink" in route["flags"]  # type: ignore[operator]

    asyncio.run(links.replace_default_route(index, "2001:db8:77::1"))
    (route6,) = ip_json(name, "-6", "route", "show", "default")
    assert (route6["gateway"], route6["metric"]) == ("2001:db8:77::1", links.metric(index))
    state = {i.name: i for i in asyncio.run(netinfo.read())}
    assert (state["veth0"].ipv4_gateway, state["veth0"].ipv6_gateway) == \
        ("192.0.2.1", "2001:db8:77::1")

    for _ in range(2):  # deleting what is gone is not an error
        asyncio.run(links.delete_default_route(index, "192.0.2.1"))
        asyncio.run(links.delete_default_route(index, "2001:db8:77::1"))
    assert ip_json(name, "-4", "route", "show", "default") == []
    assert ip_json(name, "-6", "route", "show", "default") == []


def test_kernel_refusals_are_oserrors_with_errno(veth: tuple[str, int, int]) -> None:
    _, index, _ = veth
    with pytest.raises(NetlinkError) as e:
        asyncio.run(links.set_up(99999))
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENODEV
    asyncio.run(links.set_up(index))
    with pytest.raises(OSError) as refused:  # no route leads to the gateway
        asyncio.run(links.replace_default_route(index, "192.0.2.1"))
    assert refused.value.errno == errno.ENETUNREACH and "invalid gateway" in str(refused.value)


def test_loopback_comes_up_and_netinfo_sees_it(netns: str) -> None:
    (lo,) = ip_json(netns, "link", "show", "lo")
    assert "UP" not in lo["flags"]  # type: ignore[operator]
    asyncio.run(loopback.bring_up())
    (lo,) = ip_json(netns, "link", "show", "lo")
    assert "UP" in lo["flags"]  # type: ignore[operator]
    (state,) = asyncio.run(netinfo.read())
    assert (state.name, state.loopback, state.ipv4_address, state.ipv4_netmask) == \
        ("lo", True, "127.0.0.1", "255.0.0.0")


def test_a_dump_spanning_many_datagrams(netns: str, tmp_path: Path) -> None:
    batch = tmp_path / "links"
    batch.write_text("".join(f"link add va{i} type veth peer name vb{i}\n" for i in range(150)))
    ns.run(["ip", "-n", netns, "-batch", str(batch)])
    found = asyncio.run(links.links())
    assert len(found) == 301  # lo and 150 pairs, about 400 KB of messages
    assert {link.name for link in found} == {name for _, name in socket.if_nameindex()}


# --- the socket against a user-space peer (NETLINK_USERSOCK): answers the kernel never gives --

Peer = Callable[[socket.socket, netlink.Message, tuple[int, int]], Awaitable[None]]


async def exchange(peer: Peer, *, flags: int = netlink.NLM_F_REQUEST,
                   timeout: float = 2.0) -> list[netlink.Message]:
    """Send one request from a NetlinkSocket to `peer`, which answers as it likes."""
    loop = asyncio.get_running_loop()
    server = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                           NETLINK_USERSOCK)
    server.bind((0, 0))
    nl = NetlinkSocket(NETLINK_USERSOCK)
    nl.sock.connect((server.getsockname()[0], 0))

    async def serve() -> None:
        data, address = await loop.sock_recvfrom(server, 65536)
        await peer(server, netlink.parse_messages(data)[0], address)

    task = asyncio.create_task(serve())
    try:
        return await nl.request(100, flags, b"ping", timeout=timeout)
    finally:
        task.cancel()
        nl.close()
        server.close()


def reply(server: socket.socket, address: tuple[int, int], *msgs: bytes) -> None:
    server.sendto(b"".join(msgs), address)


def error(seq: int, code: int) -> bytes:
    return netlink.pack_message(netlink.NLMSG_ERROR, 0, seq, struct.pack("=i", -code)
                                + bytes(16))


def test_no_answer_is_a_timeout_not_a_hang() -> None:
    async def silent(server: socket.socket, msg: netlink.Message, addr: tuple[int, int]) -> None:
        await asyncio.sleep(60)

    with pytest.raises(TimeoutError, match=r"no answer to message type 100 within 0\.3 s"):
        asyncio.run(exchange(silent, timeout=0.3))


def test_error_answer_carries_errno_and_stale_answers_are_skipped() -> None:
    async def refuse(server: socket.socket, msg: netlink.Message, addr: tuple[int, int]) -> None:
        assert msg.flags & netlink.NLM_F_ACK  # every non-dump request asks for its ACK
        reply(server, addr, error(msg.seq - 1, errno.EPERM))  # an earlier request's answer
        reply(server, addr, error(msg.seq, errno.EEXIST))

    with pytest.raises(NetlinkError) as e:
        asyncio.run(exchange(refuse))
    assert e.value.errno == errno.EEXIST


def test_garbage_and_truncated_answers_are_a_clear_error() -> None:
    async def garbage(server: socket.socket, msg: netlink.Message, addr: tuple[int, int]) -> None:
        reply(server, addr, netlink.HEADER.pack(400, 3, 0, msg.seq, 0) + bytes(20))

    with pytest.raises(NetlinkDecodeError, match="claims 400 bytes, 36 remain"):
        asyncio.run(exchange(garbage))


def test_multipart_dump_until_done_and_redone_when_interrupted() -> None:
    attempts: list[int] = []

    async def dump(server: socket.socket, msg: netlink.Message, addr: tuple[int, int]) -> None:
        assert msg.flags & netlink.NLM_F_DUMP == netlink.NLM_F_DUMP
        attempts.append(msg.seq)
        intr = netlink.NLM_F_DUMP_INTR if len(attempts) == 1 else 0
        for part in range(3):
            reply(server, addr, netlink.pack_message(
                100, netlink.NLM_F_MULTI | intr, msg.seq, bytes([len(attempts), part])))
        reply(server, addr, netlink.pack_message(netlink.NLMSG_DONE, netlink.NLM_F_MULTI,
                                                 msg.seq, bytes(4)))
        if len(attempts) == 1:  # the redone request
            data, address = await asyncio.get_running_loop().sock_recvfrom(server, 65536)
            await dump(server, netlink.parse_messages(data)[0], address)

    answer = asyncio.run(exchange(dump, flags=netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP))
    assert [m.payload for m in answer] == [bytes([2, part]) for part in range(3)]
    assert len(attempts) == 2 and attempts[1] == attempts[0] + 1


# --- generic netlink and the power button -----------------------------------------------------

def test_power_button_subscribes_where_the_kernel_has_acpi_events() -> None:
    """On the host (its own namespace): the acpi_event family is there iff `genl` finds it."""
    has_acpi = ns.run_ok(["genl", "ctrl", "get", "name", power_button.FAMILY])
    button = asyncio.run(power_button.PowerButton.subscribe())
    assert (button is not None) == has_acpi
    if button is not None:
        button._events.close()


def test_power_button_press_reaches_the_watcher(netns: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """ACPI-shaped events multicast on nlctrl's own group (ACPI is not per-namespace, so a
    namespace cannot have its events): the watcher calls back for the power button only."""
    caplog.set_level(logging.DEBUG, logger="mvirt-one")

    async def scenario() -> tuple[list[str], int]:
        events = await genl.EventSocket.open("nlctrl", "notify")
        presses: list[str] = []
        watcher = asyncio.create_task(power_button.PowerButton(events).watch(presses.append))
        sender = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_GENERIC)
        group = events.family.groups["notify"]
        for device in (b"ac_adapter", b"battery", b"button/power"):
            event = netlink.attr(power_button.ACPI_GENL_ATTR_EVENT, power_button.EVENT.pack(
                device, b"LNXPWRBN:00", 0x80, 1))
            sender.sendto(netlink.pack_message(
                events.family.id, 0, 0, genl.pack(power_button.ACPI_GENL_CMD_EVENT, 1, event)),
                (0, 1 << (group - 1)))
        sender.close()
        async with asyncio.timeout(5):
            while not presses:
                await asyncio.sleep(0.01)
        # Events are handled in order, each logged before its callback: a press that came
        # from another device would show here with fewer events seen.
        seen = sum("ACPI event" in r.getMessage() for r in caplog.records)
        watcher.cancel()
        return presses, seen

    assert asyncio.run(scenario()) == (["power button"], 3)


def test_unknown_family_and_group(netns: str) -> None:
    with pytest.raises(NetlinkError) as e:
        asyncio.run(genl.EventSocket.open("no_such_family", "x"))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(LookupError, match="has no multicast group x"):
        asyncio.run(genl.EventSocket.open("nlctrl", "x"))


# --- pyroute2's DHCP socket on our AsyncIPRoute (pyroute2_iproute) ----------------------------

def test_dhcp_socket_finds_its_link_and_follows_a_mac_change(veth: tuple[str, int, int]) -> None:
    from init.net import dhcp4, pyroute2_iproute

    assert sys.modules["pyroute2.iproute.linux"] is pyroute2_iproute  # not pyroute2's rtnl
    name, _, _ = veth

    async def scenario() -> tuple[str, str]:
        async with dhcp4._HardenedSocket("veth0") as sock:
            first = str(sock.l2addr)
            await asyncio.sleep(0)  # let its watcher subscribe before the change
            ns.ip(name, "link", "set", "veth0", "address", "52:54:00:ab:cd:ef")
            async with asyncio.timeout(5):
                while sock.l2addr == first:
                    await asyncio.sleep(0.01)
            return first, str(sock.l2addr)

    before = ip_json(name, "link", "show", "veth0")[0]["address"]
    assert asyncio.run(scenario()) == (before, "52:54:00:ab:cd:ef")
