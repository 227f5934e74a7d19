"""Network configuration a container could forge, sharing the VM's network namespace: a DHCP
reply it sends (the init's packet socket sees outgoing frames too) and a router advertisement
from one of the VM's own addresses (its multicast loops back to the init's raw socket)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from init.net import dhcp4
from init.net.ipv6 import ra
from tests.unit.test_net_packets import fixture

PACKET_HOST, PACKET_OUTGOING = 0, socket.PACKET_OUTGOING


class Frames:
    """What the packet socket receives: (frame, (ifname, proto, pkttype, hatype, addr))."""

    def __init__(self, frames: list[tuple[bytes, int]]) -> None:
        self.frames = [(f, ("eth0", 0x0800, kind, 1, b"")) for f, kind in frames]

    async def sock_recvfrom(self, sock: Any, size: int) -> tuple[bytes, Any]:
        return self.frames.pop(0)


def test_an_outgoing_dhcp_frame_is_not_a_reply() -> None:
    ack = fixture("dnsmasq-dhcp4-ack")
    sock = socket.socket.__new__(dhcp4._HardenedSocket)
    sock._loop = Frames([(ack, PACKET_OUTGOING), (ack, PACKET_HOST)])
    sock.ifname = "eth0"
    sock.l2addr = dhcp4.parse_frame(ack).dhcp["chaddr"]

    async def receive() -> Any:
        return await sock.get()

    got = asyncio.run(receive())
    assert got.message_type.name == "ACK"
    assert sock._loop.frames == []  # the outgoing copy was read and passed over


def test_an_ra_from_our_own_address_is_not_a_router(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "fe80000000000000b0e783fffea3e027 02 40 20 80     eth0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n")
    assert ra.from_self("fe80::b0e7:83ff:fea3:e027", "eth0", str(table))
    assert ra.from_self("fe80::b0e7:83ff:fea3:e027%eth0", "eth0", str(table))
    assert not ra.from_self("fe80::1", "eth0", str(table))  # the real router
    assert not ra.from_self("::1", "eth0", str(table))  # lo's, not eth0's
    assert ra.own_addresses("eth0", str(tmp_path / "missing")) == set()
