"""The qemu command line for a VM: a pure function of what to boot (VmSpec) and the host it boots
on (tools.Host), so the same inputs always give the same argv and tests need no real host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from onectl.tools import Host

# Block-device serial of the data disk: the guest reads it in /sys/block/vda/serial.
DATA_DISK_SERIAL = "mvirt-one-data"
# Where the UKI sits in the ESP directory: the path firmware boots from a disk it has no boot
# entry for.
ESP_LOADER = Path("EFI/BOOT/BOOTX64.EFI")
# Free page reporting (virtio-balloon, the guest kernel's CONFIG_PAGE_REPORTING): the guest reports
# blocks of free memory (2 MiB and larger, a few seconds after they were freed) and qemu punches
# them out of the memory backend, so the host gets back what a container allocated and freed, the
# unpacked initrd and the firmware's boot memory. Without it every page the guest ever touched
# stays on the host for the VM's life. The balloon itself stays empty (no target is ever set).
BALLOON = ",free-page-reporting=on"


@dataclass
class VmSpec:
    """What to boot and how. `kernel` is the UKI (boot: uefi, with its own command line) or a
    bzImage (boot: direct, with `initrd` and `append`)."""

    kernel: Path
    boot: Literal["uefi", "direct"] = "uefi"
    initrd: Path | None = None
    append: str | None = None
    machine: Literal["q35", "microvm"] = "q35"
    memory_mib: int = 128
    cpus: int = 1
    rng: bool = True
    network: Literal["none", "user", "restricted"] = "none"
    guestfwd: list[str] = field(default_factory=list)
    vhost_user_vsock: Path | None = None  # the vhost-device-vsock socket
    data_disk: Path | None = None  # a raw image (or block device) the guest sees as /dev/vda
    # More raw images (or block devices), each with the serial the guest finds it by.
    disks: list[tuple[Path, str]] = field(default_factory=list)
    # A virtio balloon that never inflates, for its free page reporting: the guest hands the
    # pages it frees back to the host (BALLOON).
    balloon: bool = False
    accel: Literal["auto", "tcg", "kvm"] = "auto"
    extra: list[str] = field(default_factory=list)


def _option_value(text: str) -> str:
    """qemu splits option values at commas; a literal comma is written twice."""
    return text.replace(",", ",,")


def argv(spec: VmSpec, host: Host, *, qmp: Path, esp: Path | None = None) -> list[str]:
    """`esp` is a directory holding the UKI at ESP_LOADER (boot: uefi)."""
    pci = spec.machine == "q35"

    def device(name: str) -> str:
        # q35 puts virtio devices on PCI; microvm only has virtio-mmio ("-device" variants).
        return f"{name}-pci" if pci else f"{name}-device"

    args = [str(host.qemu), "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-serial", "stdio", "-qmp", f"unix:{qmp},server=on,wait=off",
            "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M"]
    use_kvm = spec.accel == "kvm" or (spec.accel == "auto" and host.kvm)
    args += ["-accel", "kvm" if use_kvm else "tcg"]
    if use_kvm:
        args += ["-cpu", "host"]
    # microvm under TCG hangs after "tsc: Marking TSC unstable" without the PIT.
    args += ["-M", "q35" if pci else "microvm,pit=on"]
    if spec.boot == "uefi":
        if host.ovmf is None:
            raise ValueError("a UEFI boot needs the host's OVMF (probe_host(firmware=True))")
        if spec.append is not None:
            raise ValueError("a UKI boots with the command line it carries: build one with "
                             "another .cmdline instead of passing append")
        if esp is None:
            raise ValueError("a UEFI boot needs the ESP directory holding the UKI (esp=)")
        # The UKI boots as from a disk: OVMF reads it from a FAT ESP that qemu makes of a
        # directory (vvfat), on q35's AHCI controller, which the guest kernel has no driver for
        # (its virtio disks keep their names). With `-kernel` qemu hands the file over through
        # fw_cfg and the firmware keeps one more copy: at 96 MiB it started UKIs up to ~8.3 MB
        # where the ESP started ~9.3 MB. rw only because ide-hd refuses a read-only drive; the
        # directory is the VM's own.
        args += ["-bios", str(host.ovmf),
                 "-drive", f"file=fat:rw:{_option_value(str(esp))},format=raw,if=none,id=esp",
                 "-device", "ide-hd,drive=esp,bus=ide.0,bootindex=0"]
    else:
        args += ["-kernel", str(spec.kernel)]
        if spec.initrd:
            args += ["-initrd", str(spec.initrd)]
        append = spec.append
        if append is not None and host.tsc_khz and not use_kvm and not pci:
            # microvm has no HPET or PM timer: under TCG the kernel calibrates the TSC
            # against the PIT, which fails when the host is busy, and then hangs before
            # /init ("tsc: Unable to calibrate against PIT"). TCG's guest TSC is the host's,
            # so its frequency can be given instead of measured.
            append += f" tsc_early_khz={host.tsc_khz}"
        if append:
            args += ["-append", append]
    if spec.vhost_user_vsock is not None:
        # vhost-user needs the guest's memory shared with the vsock daemon.
        args += ["-object", f"memory-backend-memfd,id=mem,size={spec.memory_mib}M,share=on",
                 "-machine", "memory-backend=mem",
                 "-chardev", f"socket,id=vsock0,path={spec.vhost_user_vsock}",
                 "-device", device("vhost-user-vsock") + ",chardev=vsock0"]
    if spec.data_disk is not None:
        # The only virtio disk, so the guest names it /dev/vda.
        args += ["-drive", f"file={_option_value(str(spec.data_disk))},if=none,id=d0,format=raw",
                 "-device", device("virtio-blk") + f",drive=d0,serial={DATA_DISK_SERIAL}"]
    for n, (path, serial) in enumerate(spec.disks, start=1):
        args += ["-drive", f"file={_option_value(str(path))},if=none,id=d{n},format=raw",
                 "-device", device("virtio-blk") + f",drive=d{n},serial={_option_value(serial)}"]
    if spec.rng:
        args += ["-device", device("virtio-rng")]
    if spec.balloon:
        args += ["-device", device("virtio-balloon") + BALLOON]
    if spec.network != "none":
        netdev = "user,id=n0"
        if spec.network == "restricted":
            netdev += ",restrict=on"
        for fwd in spec.guestfwd:
            netdev += f",guestfwd={fwd}"
        nic = device("virtio-net") + ",netdev=n0"
        if pci:
            # No option ROM: OVMF would load iPXE's into its memory for a network boot nobody
            # asked for (the UKI boots from the ESP).
            nic += ",romfile="
        args += ["-netdev", netdev, "-device", nic]
    return args + spec.extra
