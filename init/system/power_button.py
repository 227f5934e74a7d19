"""The ACPI power button: qemu's system_powerdown and cloud-hypervisor's power-button.

With no acpid in the VM, the kernel's ACPI button driver reports presses only as generic netlink
events of the `acpi_event` family. The subscription is made before the init reports ready, so a
press that follows READY is never lost.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import NamedTuple

from init.net import genl

LOG = logging.getLogger("mvirt-one")

FAMILY = "acpi_event"
GROUP = "acpi_mc_group"
ACPI_GENL_CMD_EVENT = 1
ACPI_GENL_ATTR_EVENT = 1
# struct acpi_genl_event (drivers/acpi/event.c): device class, bus id, then two aligned u32s.
EVENT = struct.Struct("=20s15sxII")
POWER = b"button/power"


class AcpiEvent(NamedTuple):
    device_class: bytes
    bus_id: bytes
    type: int
    data: int


def decode_event(event: genl.Event) -> AcpiEvent | None:
    """The ACPI event a message carries, None if it carries none (or a malformed one)."""
    raw = event.attrs.get(ACPI_GENL_ATTR_EVENT)
    if event.cmd != ACPI_GENL_CMD_EVENT or raw is None or len(raw) < EVENT.size:
        return None
    device_class, bus_id, kind, data = EVENT.unpack_from(raw)
    return AcpiEvent(device_class.split(b"\0", 1)[0], bus_id.split(b"\0", 1)[0], kind, data)


class PowerButton:
    def __init__(self, events: genl.EventSocket) -> None:
        self._events = events

    @classmethod
    async def subscribe(cls) -> PowerButton | None:
        """Join the ACPI event group; None if the kernel has no ACPI events."""
        try:
            events = await genl.EventSocket.open(FAMILY, GROUP)
        except Exception as e:  # no ACPI or no acpi_event family: nothing to watch
            LOG.info("no ACPI events (%s): power button not watched", e)
            return None
        return cls(events)

    async def watch(self, on_press: Callable[[str], None]) -> None:
        """Call on_press("power button") for each press, until cancelled."""
        try:
            async for event in self._events.events():
                acpi = decode_event(event)
                LOG.debug("ACPI event %s", acpi)
                if acpi is not None and acpi.device_class.startswith(POWER):
                    on_press("power button")
        finally:
            self._events.close()
