"""Bring up the loopback interface (containers and the local API rely on 127.0.0.1)."""

from __future__ import annotations

from init.net import pyroute2_light


async def bring_up() -> None:
    pyroute2_light.install()
    from pyroute2.iproute.linux import AsyncIPRoute

    async with AsyncIPRoute() as ipr:
        indexes = await ipr.link_lookup(ifname="lo")
        if not indexes:
            raise OSError("no loopback interface")
        await ipr.link("set", index=indexes[0], state="up")
