"""Boot the built UKI and kernel+initramfs in qemu (TCG) and watch the init bring the VM up and
down again."""

from __future__ import annotations

import gzip
import io
import shutil
import stat
from pathlib import Path

import pytest

from onebuild import cpio
from onectl.qemu import Vm, VmSpec
from tests.fixtures.vm import BOOT_TIMEOUT, Artifacts, boot

pytestmark = pytest.mark.vm

PHASES = ("mounts", "console", "system", "network", "hooks", "api")


def _assert_boots_and_powers_off(vm: Vm) -> None:
    for name in PHASES:
        vm.wait_for(rf"phase {name} done in \d+ ms", BOOT_TIMEOUT)
    vm.wait_for(r"phase ready", BOOT_TIMEOUT)
    # The pods' cgroup bounded in memory and threads: the memory and pids controllers work.
    vm.wait_for(r"cgroups: pods may use \d+ MiB and \d+ threads", 5)
    vm.qmp("system_powerdown")  # the ACPI power button, as cloud-hypervisor's power-button
    vm.wait_for(r"shutdown requested \(power button\)", 60)
    vm.wait_for(r"powering off", 60)
    assert vm.wait_exit(60) == 0
    console = vm.console()
    assert "Kernel panic" not in console
    assert "Attempted to kill init" not in console


def test_uki_boots_under_ovmf_in_128m_and_powers_off(artifacts: Artifacts, tmp_path: Path,
                                                     vm_factory: list[Vm]) -> None:
    spec = VmSpec(kernel=artifacts.uki, boot="uefi", machine="q35", memory_mib=128)
    vm = boot(spec, tmp_path)
    vm_factory.append(vm)
    _assert_boots_and_powers_off(vm)


def test_kernel_and_initramfs_boot_directly_on_microvm(artifacts: Artifacts, tmp_path: Path,
                                                       vm_factory: list[Vm]) -> None:
    spec = VmSpec(kernel=artifacts.bzimage, boot="direct", initrd=artifacts.initramfs,
                  append=artifacts.cmdline, machine="microvm", memory_mib=128)
    vm = boot(spec, tmp_path)
    vm_factory.append(vm)
    _assert_boots_and_powers_off(vm)


def test_orphaned_grandchild_is_reaped_by_pid1(artifacts: Artifacts, tmp_path: Path,
                                               vm_factory: list[Vm]) -> None:
    if not Path("/bin/busybox").exists():
        pytest.fail("busybox-static is not installed (scripts/apt-packages.txt has it)")
    tree = tmp_path / "overlay"
    (tree / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    (tree / "bin" / "sh").symlink_to("busybox")
    hooks = tree / "etc" / "mvirt-one" / "boot.d"
    hooks.mkdir(parents=True)
    (hooks / "10-orphan").write_text(
        "#!/bin/sh\n/bin/busybox sh -c 'echo grandchild pid $$; exec /bin/busybox sleep 1' &\n"
        "exit 0\n")
    (hooks / "10-orphan").chmod(0o755 | stat.S_IFREG)
    raw = io.BytesIO()
    cpio.write(raw, tree, mtime=0)
    initrd = tmp_path / "initrd.cpio.gz"
    initrd.write_bytes(artifacts.initramfs.read_bytes() + gzip.compress(raw.getvalue()))
    spec = VmSpec(kernel=artifacts.bzimage, boot="direct", initrd=initrd,
                  append=artifacts.cmdline, machine="microvm", memory_mib=128)
    vm = boot(spec, tmp_path)
    vm_factory.append(vm)
    _, grandchild = vm.wait_for(r"grandchild pid (\d+)", BOOT_TIMEOUT)
    vm.wait_for(r"boot hook 10-orphan exited with 0", BOOT_TIMEOUT)
    vm.wait_for(rf"reaped orphan pid {grandchild.group(1)} \(exited with 0\)", 60)
    vm.qmp("system_powerdown")
    assert vm.wait_exit(120) == 0
