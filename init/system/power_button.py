"""The ACPI power button: qemu's system_powerdown and cloud-hypervisor's power-button.

With no acpid in the VM, the kernel's ACPI button driver reports presses only as generic netlink
events of the `acpi_event` family; pyroute2 decodes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from init.net import pyroute2_light

LOG = logging.getLogger("mvirt-one")


async def watch(on_press: Callable[[str], None]) -> None:
    """Call on_press("power button") for each press; returns if the kernel has no ACPI events."""
    pyroute2_light.install()
    from pyroute2.netlink.event.acpi_event import AsyncAcpiEventSocket

    sock = AsyncAcpiEventSocket()
    try:
        await sock.setup_endpoint()
    except Exception as e:  # no ACPI or no acpi_event family: nothing to watch
        LOG.info("no ACPI events (%s): power button not watched", e)
        sock.close()
        return
    LOG.debug("watching the ACPI power button")
    try:
        while True:
            async for msg in sock.get():
                event = msg.get("ACPI_GENL_ATTR_EVENT") or {}
                device_class = event.get("device_class", b"")
                LOG.debug("ACPI event %s", event)
                if device_class.startswith(b"button/power"):
                    on_press("power button")
    finally:
        sock.close()
