"""What pyroute2's DHCP client needs of pyroute2's AsyncIPRoute, on our rtnl.

pyroute2.dhcp imports AsyncIPRoute at module level: its raw socket looks its interface up
(`get_links`) and watches it for a MAC change (`bind` to RTMGRP_LINK, then `get`); its hooks
module imports it for default hooks we do not install. pyroute2_light registers this module as
`pyroute2.iproute.linux`, so the DHCP client imports without pyroute2's rtnl stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from init.net import netlink, rtnl
from init.net.netlink import NetlinkSocket


class Pyroute2Message(dict[str, Any]):
    """A decoded message with pyroute2's accessor for attributes."""

    def get_attr(self, name: str) -> Any:
        return self.get(name)


async def _each(msgs: Iterable[rtnl.Msg]) -> AsyncIterator[Pyroute2Message]:
    for msg in msgs:
        yield Pyroute2Message(msg)


class AsyncIPRoute(NetlinkSocket):
    def __init__(self) -> None:
        super().__init__(netlink.NETLINK_ROUTE)

    async def get_links(self) -> AsyncIterator[Pyroute2Message]:
        return _each(await rtnl.dump_links(self))

    async def bind(self, groups: int) -> None:
        """Join the multicast groups of a legacy RTMGRP_* mask (bit n-1 is group n)."""
        for bit in range(groups.bit_length()):
            if groups >> bit & 1:
                self.join(bit + 1)

    async def get(self) -> AsyncIterator[Pyroute2Message]:
        """The link messages of the next datagram."""
        for msg in await self.receive():
            if msg.type == rtnl.RTM_NEWLINK:
                yield Pyroute2Message(rtnl.decode_link(msg))
