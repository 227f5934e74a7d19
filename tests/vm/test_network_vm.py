"""The network phase in a real guest (qemu, TCG): DHCP from qemu's user networking, and boots with
no network device or no DHCP server that still reach READY in bounded time.

Under user networking the guest talks only to qemu's own services (10.0.2.2 DHCP/router,
10.0.2.3 DNS, and slirp's RAs): the init sends DHCP and IPv6 router solicitations and nothing
else; nothing resolves a name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onectl.qemu import Vm, VmSpec
from tests.fixtures.paths import ROOT
from tests.fixtures.vm import BOOT_TIMEOUT, Artifacts, boot

pytestmark = pytest.mark.vm

NET_LINE = (r"network eth0 (?P<mac>[0-9a-f:]{17}) ipv4 10\.0\.2\.15/24 via 10\.0\.2\.2 "
            r"dns 10\.0\.2\.3")
READY = r"phase ready"


def _spec(artifacts: Artifacts, **kw: object) -> VmSpec:
    return VmSpec(kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
                  append=artifacts.cmdline, machine="microvm", memory_mib=128, **kw)  # type: ignore[arg-type]


def _record(name: str, seconds: float) -> None:
    out = ROOT / "target" / "bench" / "net_boot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[name] = round(seconds, 3)
    data["measured"] = ("boot_to_ready_*: seconds from qemu start (TCG, microvm, 128 MiB, direct "
                        "boot) to the init's `phase ready`; the boot without a NIC is the "
                        "baseline of the others. vm_link_up_to_address_s: the guest's own "
                        "figure, link up to address configured")
    base = data.get("boot_to_ready_no_nic_s")
    for key in ("boot_to_ready_dhcp_s", "boot_to_ready_silent_nic_2s_wait_s"):
        if base and key in data:
            data[key.removesuffix("_s") + "_minus_no_nic_s"] = round(data[key] - base, 3)
    out.write_text(json.dumps(data, indent=1))


def _power_off(vm: Vm) -> None:
    vm.qmp("system_powerdown")
    vm.wait_for(r"powering off", 60)
    assert vm.wait_exit(60) == 0


def test_user_networking_gives_the_slirp_lease(artifacts: Artifacts, tmp_path: Path,
                                              vm_factory: list[Vm]) -> None:
    vm = boot(_spec(artifacts, network="user"), tmp_path)
    vm_factory.append(vm)
    vm.wait_for(r"eth0: dhcp4 10\.0\.2\.15/24 via 10\.0\.2\.2", BOOT_TIMEOUT)
    _, net = vm.wait_for(NET_LINE, BOOT_TIMEOUT)
    assert net.group("mac") != "00:00:00:00:00:00"
    ready, _ = vm.wait_for(READY, BOOT_TIMEOUT)
    _, up = vm.wait_for(r"eth0: configured (\d+\.\d+) s after link up", 5)
    _record("boot_to_ready_dhcp_s", ready)
    _record("vm_link_up_to_address_s", float(up.group(1)))
    _power_off(vm)
    console = vm.console()
    assert "Traceback" not in console
    assert "dhcp4 lease unbound" in console  # RELEASE on the way down


def test_no_network_device_reaches_ready(artifacts: Artifacts, tmp_path: Path,
                                         vm_factory: list[Vm]) -> None:
    """No NIC: the network phase ends without waiting for a NIC's one.dhcp_timeout."""
    spec = _spec(artifacts, network="none")
    wait = 60  # a boot that sat out the wait for NICs would take this long
    spec.append = f"{artifacts.cmdline} one.dhcp_timeout={wait}"
    vm = boot(spec, tmp_path)
    vm_factory.append(vm)
    vm.wait_for(r"network: no interface to configure", BOOT_TIMEOUT)
    _, phase = vm.wait_for(r"phase network done in (\d+) ms", BOOT_TIMEOUT)
    # Measured against the wait, not an absolute: a TCG guest on a loaded host is slow.
    assert int(phase.group(1)) < wait * 1000 / 4, phase.group(0)
    ready, _ = vm.wait_for(READY, BOOT_TIMEOUT)
    _record("boot_to_ready_no_nic_s", ready)
    _power_off(vm)


def test_silent_network_waits_a_bounded_time(artifacts: Artifacts, tmp_path: Path,
                                             vm_factory: list[Vm]) -> None:
    """A NIC on an empty qemu hub: nobody answers DHCP. Boot goes on after one.dhcp_timeout."""
    spec = _spec(artifacts, extra=["-netdev", "hubport,id=n0,hubid=7",
                                   "-device", "virtio-net-device,netdev=n0"])
    spec.append = f"{artifacts.cmdline} one.dhcp_timeout=2"
    vm = boot(spec, tmp_path)
    vm_factory.append(vm)
    vm.wait_for(r"network: eth0 not configured after 2\.0 s", BOOT_TIMEOUT)
    _, phase = vm.wait_for(r"phase network done in (\d+) ms", 5)
    assert 2000 <= int(phase.group(1)) < 6000
    ready, _ = vm.wait_for(READY, BOOT_TIMEOUT)
    _record("boot_to_ready_silent_nic_2s_wait_s", ready)
    _power_off(vm)
