"""The ACPI power button: qemu's system_powerdown and cloud-hypervisor's power-button.

With no acpid in the VM, the kernel's ACPI button driver reports presses only as generic netlink
events of the `acpi_event` family; pyroute2 decodes them. The subscription is made before the
init reports ready, so a press that follows READY is never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from init.net import pyroute2_light

LOG = logging.getLogger("mvirt-one")


class PowerButton:
    def __init__(self, sock: Any) -> None:
        self._sock = sock

    @classmethod
    async def subscribe(cls) -> PowerButton | None:
        """Join the ACPI event group; None if the kernel has no ACPI events."""
        pyroute2_light.install()
        try:
            from pyroute2.netlink.event.acpi_event import AsyncAcpiEventSocket

            sock = AsyncAcpiEventSocket()
        except Exception:
            LOG.exception("power button not watched: cannot load the ACPI event socket")
            return None
        try:
            await sock.setup_endpoint()
        except Exception as e:  # no ACPI or no acpi_event family: nothing to watch
            LOG.info("no ACPI events (%s): power button not watched", e)
            sock.close()
            return None
        return cls(sock)

    async def watch(self, on_press: Callable[[str], None]) -> None:
        """Call on_press("power button") for each press, until cancelled."""
        try:
            while True:
                async for msg in self._sock.get():
                    event = msg.get("ACPI_GENL_ATTR_EVENT") or {}
                    LOG.debug("ACPI event %s", event)
                    if event.get("device_class", b"").startswith(b"button/power"):
                        on_press("power button")
        finally:
            self._sock.close()
