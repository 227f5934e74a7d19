"""The data directory in a VM: on a disk when there is one, else on a size-limited tmpfs.

Never on the initramfs root: ramfs has no size limit and never says ENOSPC, so an image larger
than the free memory would end in a kernel panic instead of a failed pull.

The disk is `one.data_disk`: a device path, or LABEL=name (default LABEL=mvirt-one-data). An ext4
disk is mounted as it is — what it holds survives reboots. A blank disk (nothing but zeros where
filesystems keep their signatures) is formatted ext4 first; a disk holding anything else is never
formatted: the init says so and falls back to the tmpfs.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from init.system import libc, meminfo
from init.system.reaper import Reaper, describe_status
from init.system.spawn import run_bounded

LOG = logging.getLogger("mvirt-one")

MKE2FS = "/sbin/mke2fs"
DEFAULT_LABEL = "mvirt-one-data"
SYS_BLOCK = Path("/sys/class/block")
# Where ext2/3/4 keep the superblock, and in it the magic and the volume label.
SUPERBLOCK, MAGIC_AT, LABEL_AT, EXT_MAGIC = 1024, 56, 120, 0xEF53
# A disk is blank when its first MiB is zeros: every filesystem, partition table and LVM or
# RAID signature we could destroy lives there (GPT's backup header alone lives at the end).
BLANK_PROBE = 1 << 20
FORMAT_TIMEOUT = 120.0
MIN_TMPFS = 16 << 20


class DataDiskError(RuntimeError):
    """The data disk cannot be used; the message says why (the init falls back to tmpfs)."""


@dataclass(frozen=True)
class Disk:
    path: str
    label: str | None  # the ext label; None: no ext filesystem
    blank: bool


def probe(path: str) -> Disk:
    """What is on a block device (or an image file): an ext filesystem's label, or blank."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLANK_PROBE)
    except OSError as e:
        raise DataDiskError(f"{path}: cannot read it ({e.strerror})") from None
    sb = head[SUPERBLOCK:SUPERBLOCK + 1024]
    if len(sb) == 1024 and struct.unpack_from("<H", sb, MAGIC_AT)[0] == EXT_MAGIC:
        label = sb[LABEL_AT:LABEL_AT + 16].split(b"\0", 1)[0].decode("utf-8", "replace")
        return Disk(path, label, False)
    return Disk(path, None, not head.strip(b"\0"))


def disks(sys_block: Path = SYS_BLOCK) -> list[str]:
    """Whole virtio, SCSI and NVMe disks (not partitions, loop or ram devices), in name order."""
    try:
        names = sorted(p.name for p in sys_block.iterdir())
    except OSError:
        return []
    return [f"/dev/{n}" for n in names if n.startswith(("vd", "sd", "nvme", "xvd"))
            and not (sys_block / n / "partition").exists()]


def choose(setting: str, candidates: list[str]) -> Disk | None:
    """The disk `setting` names: a path, or the disk with that ext label; else, for a label,
    the first blank disk (it will be formatted with that label). None: no data disk."""
    if setting.startswith("/dev/"):
        if not os.path.exists(setting):
            raise DataDiskError(f"{setting}: no such device")
        return probe(setting)
    label = setting.removeprefix("LABEL=")
    probed = []
    for path in candidates:
        try:
            probed.append(probe(path))
        except DataDiskError as e:
            LOG.warning("data disk: %s", e)
    labelled = next((d for d in probed if d.label == label), None)
    return labelled or next((d for d in probed if d.blank), None)


async def _format(disk: Disk, label: str, reaper: Reaper, log: Path) -> None:
    # Lazy inode table and journal initialisation: formatting writes a few MiB, not the
    # journal's 64 MiB of zeros (slow under emulation; the kernel finishes it in the background).
    argv = [MKE2FS, "-q", "-F", "-t", "ext4", "-L", label, "-m", "0",
            "-E", "lazy_itable_init=1,lazy_journal_init=1", disk.path]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        status, _ = await run_bounded(argv, reaper, FORMAT_TIMEOUT, stdout=fd, stderr=fd)
    except OSError as e:
        raise DataDiskError(f"cannot run {MKE2FS}: {e.strerror}") from None
    finally:
        os.close(fd)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        output = log.read_text(errors="replace").strip().splitlines()
        raise DataDiskError(f"formatting {disk.path} failed ({describe_status(status)}): "
                            + (output[-1] if output else "no output"))


def tmpfs_size(setting: str, available_kib: int | None) -> str:
    """tmpfs's size= for `one.data_size`: a share of the memory available now, or as given."""
    if not setting.endswith("%"):
        return setting
    share = int(setting[:-1]) * (available_kib or 0) * 1024 // 100
    return str(max(share, MIN_TMPFS))


async def prepare(data_dir: Path, disk_setting: str, size_setting: str, reaper: Reaper,
                  work: Path = Path("/run")) -> str:
    """Mount the data directory; returns what it is on, for the boot log. Never raises."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        disk = choose(disk_setting, disks())
        if disk is not None:
            if disk.label is None and not disk.blank:
                raise DataDiskError(f"{disk.path} holds something that is not ext4 and not blank:"
                                    " not formatted (give a blank disk or an ext4 one)")
            if disk.label is None:
                label = disk_setting.removeprefix("LABEL=") if disk_setting.startswith(
                    "LABEL=") else DEFAULT_LABEL
                LOG.info("data disk %s is blank: formatting it ext4 (label %s)", disk.path, label)
                await _format(disk, label, reaper, work / "mke2fs.log")
            libc.mount(disk.path, str(data_dir), "ext4", libc.MS_NOATIME, "")
            os.chmod(data_dir, 0o700)
            return f"{disk.path} (ext4)"
    except (DataDiskError, OSError) as e:
        LOG.error("data disk: %s; using memory instead", e)
    size = tmpfs_size(size_setting, meminfo.available_kib())
    try:
        libc.mount("tmpfs", str(data_dir), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   f"size={size},mode=0700")
    except OSError as e:
        LOG.error("tmpfs for the data directory: %s", e)
        return "the initramfs (no size limit!)"
    return f"a tmpfs of {int(size) >> 20} MiB" if size.isdigit() else f"a tmpfs of {size}"
