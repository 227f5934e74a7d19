"""The data directory in a VM: on a disk when there is one, else on a size-limited tmpfs.

Never on the initramfs root: ramfs has no size limit and never says ENOSPC, so an image larger
than the free memory would end in a kernel panic instead of a failed pull.

Which disk (`one.data_disk`): a device path, or LABEL=name (default LABEL=mvirt-one-data).
- An ext4 disk that is named (by path or by its label) is checked (`e2fsck -p`) and mounted
  nodev,nosuid with errors=remount-ro. What it holds survives reboots.
- A disk is formatted only when it is meant for us (named by path, or carrying the block-device
  serial `mvirt-one-data` that `onectl run --data-disk` gives it) *and* blank: zeros in its first
  and its last MiB, where every filesystem, partition table (GPT keeps a backup header in the
  last sector) and RAID superblock (md 0.90/1.0, DDF, IMSM live at the end) keeps a signature.
  mke2fs runs without -F (its own checks stay on) and without discard (a TRIM of a disk that
  held data would make it unrecoverable).
- A disk this init did not format (another label, no marker) is used inside a directory of ours
  on it, so the pods and runtime state cleaned at boot are only ever ours.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from init.system import libc, meminfo
from init.system.reaper import Reaper, describe_status
from init.system.spawn import run_bounded

LOG = logging.getLogger("mvirt-one")

MKE2FS = "/sbin/mke2fs"
E2FSCK = "/sbin/e2fsck"
DEFAULT_LABEL = "mvirt-one-data"
SERIAL = "mvirt-one-data"  # the block-device serial of a disk given to us to format
OURS = ".mvirt-one"  # a marker at the root of a filesystem this init made
SUBDIR = "mvirt-one"  # our directory on a filesystem someone else made
SYS_BLOCK = Path("/sys/class/block")
# Where ext2/3/4 keep the superblock, and in it the magic and the volume label.
SUPERBLOCK, MAGIC_AT, LABEL_AT, EXT_MAGIC = 1024, 56, 120, 0xEF53
BLANK_PROBE = 1 << 20  # bytes read at each end
FORMAT_TIMEOUT = 120.0
FSCK_TIMEOUT = 300.0
MIN_TMPFS = 16 << 20
MOUNT_FLAGS = libc.MS_NOATIME | libc.MS_NODEV | libc.MS_NOSUID
# The blocks ext4 keeps back (mke2fs -m, percent) are the init's alone: it has CAP_SYS_RESOURCE,
# containers have not (and their overlays are mounted without it: rootfs.py), and the reserve's
# owner is a uid nobody runs as (ext4 lets that uid, root by default, have them too). A container
# that fills the disk leaves the init room for its logs, images and files.
# Never errors=panic: with panic=-1 on the command line that is a reboot loop.
RESERVED_PERCENT = "2"
RESERVE_OWNER = 2147483646
MOUNT_DATA = f"errors=remount-ro,resuid={RESERVE_OWNER},resgid={RESERVE_OWNER}"


class DataDiskError(RuntimeError):
    """The data disk cannot be used; the message says why (the init falls back to tmpfs)."""


@dataclass(frozen=True)
class Disk:
    path: str
    label: str | None  # the ext label; None: no ext filesystem
    blank: bool  # zeros at both ends
    serial: str = ""


def serial_of(path: str, sys_block: Path = SYS_BLOCK) -> str:
    try:
        return (sys_block / Path(path).name / "serial").read_text().strip()
    except OSError:
        return ""


def probe(path: str, serial: str = "") -> Disk:
    """What is on a block device (or an image file): an ext filesystem's label, or blank."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLANK_PROBE)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - BLANK_PROBE, 0))
            tail = f.read(BLANK_PROBE)
    except OSError as e:
        raise DataDiskError(f"{path}: cannot read it ({e.strerror})") from None
    sb = head[SUPERBLOCK:SUPERBLOCK + 1024]
    if len(sb) == 1024 and struct.unpack_from("<H", sb, MAGIC_AT)[0] == EXT_MAGIC:
        label = sb[LABEL_AT:LABEL_AT + 16].split(b"\0", 1)[0].decode("utf-8", "replace")
        return Disk(path, label, False, serial)
    return Disk(path, None, not head.strip(b"\0") and not tail.strip(b"\0"), serial)


def disks(sys_block: Path = SYS_BLOCK) -> list[str]:
    """Whole virtio, SCSI and NVMe disks (not partitions, loop or ram devices), in name order."""
    try:
        names = sorted(p.name for p in sys_block.iterdir())
    except OSError:
        return []
    return [f"/dev/{n}" for n in names if n.startswith(("vd", "sd", "nvme", "xvd"))
            and not (sys_block / n / "partition").exists()]


def choose(setting: str, candidates: list[str],
           serial: Callable[[str], str] = serial_of) -> Disk | None:
    """The disk `setting` names: a path, or the disk with that ext label; else, for a label, a
    blank disk with our serial (it will be formatted with that label). None: no data disk."""
    if setting.startswith("/dev/"):
        if not os.path.exists(setting):
            raise DataDiskError(f"{setting}: no such device")
        return probe(setting, serial(setting))
    label = setting.removeprefix("LABEL=")
    probed = []
    for path in candidates:
        try:
            probed.append(probe(path, serial(path)))
        except DataDiskError as e:
            LOG.warning("data disk: %s", e)
    labelled = next((d for d in probed if d.label == label), None)
    if labelled is not None:
        return labelled
    ours = [d for d in probed if d.serial == SERIAL]
    for d in ours:
        if not d.blank:
            LOG.error("data disk %s has the serial %s but is not blank (a signature in its "
                      "first or last MiB): not formatted", d.path, SERIAL)
    blank_strangers = [d.path for d in probed if d.blank and d.serial != SERIAL]
    if blank_strangers:
        LOG.info("blank disks %s not used: only a disk with the serial %s or named by "
                 "one.data_disk is formatted", ", ".join(blank_strangers), SERIAL)
    return next((d for d in ours if d.blank), None)


async def _run(argv: list[str], reaper: Reaper, timeout: float, log: Path) -> tuple[int, str]:
    """Run a tool with its output in `log`: (its wait status, its last line)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        status, _ = await run_bounded(argv, reaper, timeout, stdout=fd, stderr=fd)
    except OSError as e:
        raise DataDiskError(f"cannot run {argv[0]}: {e.strerror}") from None
    finally:
        os.close(fd)
    output = log.read_text(errors="replace").strip().splitlines()
    return status, output[-1] if output else "no output"


async def _format(disk: Disk, label: str, reaper: Reaper, log: Path) -> None:
    # Lazy inode table and journal initialisation: formatting writes a few MiB, not the
    # journal's 64 MiB of zeros (slow under emulation; the kernel finishes it in the background).
    argv = [MKE2FS, "-q", "-t", "ext4", "-L", label, "-m", RESERVED_PERCENT,
            "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", disk.path]
    status, last = await _run(argv, reaper, FORMAT_TIMEOUT, log)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        raise DataDiskError(f"formatting {disk.path} failed ({describe_status(status)}): {last}")


async def check(disk: Disk, reaper: Reaper, log: Path) -> None:
    """`e2fsck -p`: what it may fix unattended it fixes (exit 1, 2); anything else leaves the disk
    unused, its data untouched, for a person to look at."""
    status, last = await _run([E2FSCK, "-p", disk.path], reaper, FSCK_TIMEOUT, log)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1, 2)):
        raise DataDiskError(f"{disk.path}: e2fsck -p found what it may not fix alone "
                            f"({describe_status(status)}: {last}); not mounted")


def _mount(disk: Disk, data_dir: Path, work: Path, *, formatted: bool) -> str:
    """Mount the ext4 disk on the data directory: its root if this init made the filesystem,
    else our own directory on it."""
    stage = work / "data-disk"
    stage.mkdir(parents=True, exist_ok=True)
    libc.mount(disk.path, str(stage), "ext4", MOUNT_FLAGS, MOUNT_DATA)
    try:
        if formatted:
            (stage / OURS).touch()
        if (stage / OURS).exists() or disk.label == DEFAULT_LABEL:
            source, where = stage, f"{disk.path} (ext4)"
        else:
            source = stage / SUBDIR
            source.mkdir(mode=0o700, exist_ok=True)
            where = f"{disk.path} (ext4, in its directory {SUBDIR}/)"
        libc.mount(str(source), str(data_dir), "", libc.MS_BIND)
    except BaseException:
        libc.umount(str(stage), libc.MNT_DETACH)
        raise
    # The bind keeps what it shows; the staging mount goes (nodev/nosuid carry over to the bind).
    libc.umount(str(stage), libc.MNT_DETACH)
    return where


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
                raise DataDiskError(f"{disk.path} holds something that is not ext4 (a signature "
                                    "in its first or last MiB): not formatted (give a blank "
                                    "disk or an ext4 one)")
            if disk.label is None:
                label = disk_setting.removeprefix("LABEL=") if disk_setting.startswith(
                    "LABEL=") else DEFAULT_LABEL
                LOG.info("data disk %s is blank: formatting it ext4 (label %s)", disk.path, label)
                await _format(disk, label, reaper, work / "mke2fs.log")
                disk = Disk(disk.path, label, False, disk.serial)
                where = _mount(disk, data_dir, work, formatted=True)
            else:
                await check(disk, reaper, work / "e2fsck.log")
                where = _mount(disk, data_dir, work, formatted=False)
            os.chmod(data_dir, 0o700)
            return where
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
