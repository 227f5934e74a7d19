"""Free page reporting: the virtio balloon `onectl run` gives every VM (q35: on PCI, microvm: on
virtio-mmio), the same in the printed cloud-hypervisor command line, and `--no-balloon` for a VM
without it. The VM test (tests/vm/test_density_vm.py) checks what the guest makes of it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from onectl import cloud_hypervisor, tools
from onectl.cli import build_parser
from onectl.commands.run import config_from
from onectl.machine import MachineConfig
from onectl.qemu_argv import VmSpec, argv

QMP = Path("/run/vm/qmp.sock")
ESP = Path("/run/vm/esp")
HOST = tools.Host(qemu=Path("/q"), ovmf=Path("/fw/OVMF.fd"), kvm=False, tsc_khz=2_500_000)
VHOST = Path("/run/vm/vhost.sock")


def _devices(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "-device"]


@pytest.mark.parametrize("boot,device", [
    ("uefi", "virtio-balloon-pci,free-page-reporting=on"),
    ("direct", "virtio-balloon-device,free-page-reporting=on")])
def test_a_machine_has_a_balloon_that_reports_free_pages(boot: str, device: str) -> None:
    config = MachineConfig(kernel=Path("/k"), boot=boot)  # type: ignore[arg-type]
    args = argv(config.vm_spec(VHOST), HOST, qmp=QMP, esp=ESP)
    balloons = [d for d in _devices(args) if "balloon" in d]
    assert balloons == [device]


def test_the_balloon_shares_the_memfd_backend_with_vhost_user() -> None:
    """Reported pages are punched out of the memfd qemu and vhost-device-vsock both map."""
    args = argv(MachineConfig(kernel=Path("/k")).vm_spec(VHOST), HOST, qmp=QMP, esp=ESP)
    assert "memory-backend-memfd,id=mem,size=128M,share=on" in args


def test_no_balloon_when_asked_for_none() -> None:
    for boot in ("uefi", "direct"):
        config = MachineConfig(kernel=Path("/k"), boot=boot, balloon=False)
        args = argv(config.vm_spec(VHOST), HOST, qmp=QMP, esp=ESP)
        assert not any("balloon" in a for a in args), args


def test_a_bare_vm_spec_has_no_balloon() -> None:
    """VmSpec is also the benchmarks' and the tests' bare qemu: a balloon only when asked for."""
    assert not any("balloon" in a for a in argv(VmSpec(kernel=Path("/k")), HOST, qmp=QMP,
                                                 esp=ESP))
    spec = VmSpec(kernel=Path("/k"), boot="direct", machine="microvm", balloon=True, rng=False)
    assert _devices(argv(spec, HOST, qmp=QMP)) == ["virtio-balloon-device,free-page-reporting=on"]


def _run_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "/k/one.efi", *extra])


def test_onectl_run_has_the_balloon_unless_no_balloon() -> None:
    assert config_from(_run_args()).balloon is True
    assert config_from(_run_args("--no-balloon")).balloon is False


def test_cloud_hypervisor_gets_an_empty_balloon_with_free_page_reporting() -> None:
    def ch(config: MachineConfig) -> list[str]:
        return cloud_hypervisor.argv(config, vsock_socket=Path("/run/vm/vm.vsock"),
                                     console_log=None, tap="tap0")

    args = ch(MachineConfig(kernel=Path("/k/one.efi")))
    i = args.index("--balloon")
    # size is mandatory in cloud-hypervisor's --balloon; 0 never takes memory from the guest.
    assert args[i + 1] == "size=0,free_page_reporting=on"
    assert args.count("--balloon") == 1
    assert "--balloon" not in ch(MachineConfig(kernel=Path("/k/one.efi"), balloon=False))
