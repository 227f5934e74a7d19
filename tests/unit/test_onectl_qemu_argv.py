"""The qemu command line as a pure function of the VM's spec and a host's facts: a fake host in,
the exact argv out, whatever the machine running the test has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onectl import tools
from onectl.errors import OnectlError
from onectl.machine import MachineConfig
from onectl.qemu import Vm, VmError
from onectl.qemu_argv import VmSpec, argv

QMP = Path("/run/vm/qmp.sock")
ESP = Path("/run/vm/esp")
TCG_HOST = tools.Host(qemu=Path("/opt/q/qemu-system-x86_64"), ovmf=Path("/fw/OVMF.fd"),
                      kvm=False, tsc_khz=2_500_000)
KVM_HOST = tools.Host(qemu=Path("/opt/q/qemu-system-x86_64"), ovmf=None, kvm=True, tsc_khz=None)
HEAD = ["/opt/q/qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-serial", "stdio", "-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off"]


def _after(args: list[str], flag: str) -> list[str]:
    """Every value given to `flag`, in order."""
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_uki_on_q35_under_tcg_boots_from_an_esp_on_ahci() -> None:
    spec = VmSpec(kernel=Path("/k/one.efi"), memory_mib=256, cpus=2, network="restricted",
                  guestfwd=["tcp:10.0.2.100:5000-tcp:127.0.0.1:9"])
    assert argv(spec, TCG_HOST, qmp=QMP, esp=Path("/run/vm,1/esp")) == HEAD + [
        "-smp", "2", "-m", "256M", "-accel", "tcg", "-M", "q35", "-bios", "/fw/OVMF.fd",
        "-drive", "file=fat:rw:/run/vm,,1/esp,format=raw,if=none,id=esp",
        "-device", "ide-hd,drive=esp,bus=ide.0,bootindex=0",
        "-device", "virtio-rng-pci",
        "-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-tcp:127.0.0.1:9",
        "-device", "virtio-net-pci,netdev=n0,romfile="]


def test_uki_takes_no_command_line_and_needs_its_esp() -> None:
    with pytest.raises(ValueError, match="command line it carries"):
        argv(VmSpec(kernel=Path("/k/one.efi"), append="quiet"), TCG_HOST, qmp=QMP,
             esp=Path("/e"))
    with pytest.raises(ValueError, match="ESP"):
        argv(VmSpec(kernel=Path("/k/one.efi")), TCG_HOST, qmp=QMP)


def test_direct_microvm_under_tcg_gets_the_hosts_tsc_frequency() -> None:
    spec = VmSpec(kernel=Path("/k/bzImage"), boot="direct", initrd=Path("/k/initrd.gz"),
                  append="console=ttyS0 quiet", machine="microvm", rng=False)
    args = argv(spec, TCG_HOST, qmp=QMP)
    assert args == HEAD + [
        "-smp", "1", "-m", "128M", "-accel", "tcg", "-M", "microvm,pit=on",
        "-kernel", "/k/bzImage", "-initrd", "/k/initrd.gz",
        "-append", "console=ttyS0 quiet tsc_early_khz=2500000"]


def test_kvm_host_uses_kvm_and_passes_no_tsc_frequency() -> None:
    spec = VmSpec(kernel=Path("/k/bzImage"), boot="direct", initrd=Path("/k/i"), append="quiet",
                  machine="microvm")
    args = argv(spec, KVM_HOST, qmp=QMP)
    assert _after(args, "-accel") == ["kvm"] and _after(args, "-cpu") == ["host"]
    assert _after(args, "-append") == ["quiet"]


@pytest.mark.parametrize("accel,expected", [("auto", "tcg"), ("tcg", "tcg"), ("kvm", "kvm")])
def test_accel_choice_on_a_host_without_kvm(accel: str, expected: str) -> None:
    spec = VmSpec(kernel=Path("/k/one.efi"), accel=accel)  # type: ignore[arg-type]
    assert _after(argv(spec, TCG_HOST, qmp=QMP, esp=ESP), "-accel") == [expected]


def test_tcg_forced_on_a_kvm_host_still_gets_the_tsc_when_known() -> None:
    host = tools.Host(qemu=Path("/q"), ovmf=None, kvm=True, tsc_khz=1_000)
    spec = VmSpec(kernel=Path("/k"), boot="direct", append="quiet", machine="microvm",
                  accel="tcg")
    assert _after(argv(spec, host, qmp=QMP), "-append") == ["quiet tsc_early_khz=1000"]


def test_vhost_user_vsock_shares_the_guest_memory() -> None:
    for machine, device in (("q35", "vhost-user-vsock-pci"),
                            ("microvm", "vhost-user-vsock-device")):
        spec = VmSpec(kernel=Path("/k"), boot="direct", machine=machine,  # type: ignore[arg-type]
                      memory_mib=192, vhost_user_vsock=Path("/run/vm/vhost.sock"), rng=False)
        args = argv(spec, TCG_HOST, qmp=QMP)
        assert _after(args, "-object") == [
            "memory-backend-memfd,id=mem,size=192M,share=on"]
        assert _after(args, "-machine") == ["memory-backend=mem"]
        assert _after(args, "-chardev") == ["socket,id=vsock0,path=/run/vm/vhost.sock"]
        assert _after(args, "-device") == [f"{device},chardev=vsock0"]


def test_uefi_without_firmware_in_the_host_facts_is_refused() -> None:
    with pytest.raises(ValueError, match="OVMF"):
        argv(VmSpec(kernel=Path("/k/one.efi")), KVM_HOST, qmp=QMP)


def test_extra_arguments_come_last() -> None:
    spec = VmSpec(kernel=Path("/k"), boot="direct", machine="microvm",
                  extra=["-netdev", "hubport,id=n0,hubid=7"])
    assert argv(spec, TCG_HOST, qmp=QMP)[-2:] == ["-netdev", "hubport,id=n0,hubid=7"]


USER_NET_ARGV = HEAD + [
    "-smp", "1", "-m", "128M", "-accel", "tcg", "-M", "q35", "-bios", "/fw/OVMF.fd",
    "-drive", "file=fat:rw:/run/vm/esp,format=raw,if=none,id=esp",
    "-device", "ide-hd,drive=esp,bus=ide.0,bootindex=0", "-device", "virtio-rng-pci",
    "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]


def test_the_argv_does_not_depend_on_the_machine_running_it(tmp_path: Path) -> None:
    """The same spec and host facts give the same argv in another process with another hash
    seed, working directory, PATH and HOME: nothing is probed, nothing depends on set order."""
    spec = VmSpec(kernel=Path("/k/one.efi"), network="user")
    assert argv(spec, TCG_HOST, qmp=QMP, esp=ESP) == USER_NET_ARGV
    code = ("import json; from pathlib import Path; "
            "from tests.unit.test_onectl_qemu_argv import ESP, QMP, TCG_HOST, VmSpec, argv; "
            "print(json.dumps(argv(VmSpec(kernel=Path('/k/one.efi'), network='user'), "
            "TCG_HOST, qmp=QMP, esp=ESP)))")
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        env = {"PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "PATH": str(tmp_path),
               "HOME": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == USER_NET_ARGV


def test_probe_host_reads_the_real_host(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    """The one look-up: qemu on PATH and OVMF only when asked for."""
    fake = tmp_path / tools.QEMU
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "OVMF", tmp_path / "absent.fd")
    host = tools.probe_host(firmware=False)
    assert host.qemu == fake and host.ovmf is None
    with pytest.raises(OnectlError, match="install the Debian package ovmf"):
        tools.probe_host(firmware=True)
    firmware = tmp_path / "OVMF.fd"
    firmware.write_bytes(b"\0")
    monkeypatch.setattr(tools, "OVMF", firmware)
    assert tools.probe_host(firmware=True).ovmf == firmware
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OnectlError, match="qemu-system-x86"):
        tools.probe_host(firmware=False)


@pytest.mark.parametrize("machine,device", [("q35", "virtio-blk-pci"),
                                            ("microvm", "virtio-blk-device")])
def test_data_disk_is_a_raw_virtio_blk_drive(machine: str, device: str) -> None:
    spec = VmSpec(kernel=Path("/k"), boot="direct", machine=machine,  # type: ignore[arg-type]
                  data_disk=Path("/var/lib/one/data.img"), rng=False)
    args = argv(spec, TCG_HOST, qmp=QMP)
    assert _after(args, "-drive") == ["file=/var/lib/one/data.img,if=none,id=d0,format=raw"]
    assert _after(args, "-device") == [f"{device},drive=d0,serial=mvirt-one-data"]


def test_a_comma_in_the_disk_path_is_doubled_for_qemu() -> None:
    spec = VmSpec(kernel=Path("/k"), boot="direct", data_disk=Path("/d/a,b.img"))
    assert _after(argv(spec, TCG_HOST, qmp=QMP), "-drive") == [
        "file=/d/a,,b.img,if=none,id=d0,format=raw"]


def test_no_data_disk_no_drive() -> None:
    assert "-drive" not in argv(VmSpec(kernel=Path("/k"), boot="direct"), TCG_HOST, qmp=QMP)


def test_machine_config_passes_the_data_disk_on() -> None:
    config = MachineConfig(kernel=Path("/k"), data_disk=Path("/d.img"))
    assert config.vm_spec(Path("/run/vhost.sock")).data_disk == Path("/d.img")


def test_the_esp_holds_a_copy_of_the_uki_where_firmware_looks(tmp_path: Path) -> None:
    uki = tmp_path / "one.efi"
    uki.write_bytes(b"MZ uki")
    esp = Vm(VmSpec(kernel=uki), tmp_path / "run")._make_esp()
    loader = esp / "EFI" / "BOOT" / "BOOTX64.EFI"
    assert loader.read_bytes() == b"MZ uki" and not loader.samefile(uki)
    with pytest.raises(VmError, match="cannot put the UKI"):
        Vm(VmSpec(kernel=tmp_path / "absent.efi"), tmp_path / "run2")._make_esp()
