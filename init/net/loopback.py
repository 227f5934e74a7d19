"""Bring up the loopback interface (containers and the local API rely on 127.0.0.1)."""

from __future__ import annotations

from init.net import rtnl


async def bring_up() -> None:
    async with rtnl.open_socket() as nl:
        lo = await rtnl.get_link(nl, name="lo")
        await rtnl.set_link(nl, int(lo["index"]), up=True)
