"""The data disk of `onectl run --data-disk PATH[:SIZE]`: a raw image the guest sees as /dev/vda.

A missing image is created sparse (it takes no space until the guest writes) and blank: the guest
formats a blank disk itself. An existing image is used as it is, never truncated or resized:
its contents are the images and pods kept across reboots.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from onectl.errors import OnectlError

DEFAULT_SIZE = 4 << 30
MIN_SIZE = 16 << 20  # room for ext4's metadata and a journal; a smaller one is a typo
SECTOR = 512  # virtio-blk sees the image in 512-byte sectors
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+)([KMGT]?)(?:i?B)?", re.IGNORECASE)


def human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size} bytes"


def parse_size(text: str) -> int:
    """`2G`, `512M`, `1T`, `65536K` (powers of 1024, as truncate and qemu-img count) or bytes."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"bad size {text!r}: a number with an optional K, M, G or T "
                         "(powers of 1024), e.g. 4G or 512M")
    size = int(m.group(1)) * _UNITS[m.group(2).upper()]
    if size < MIN_SIZE:
        raise ValueError(f"size {text!r} is below the minimum of {human(MIN_SIZE)}")
    if size % SECTOR:
        raise ValueError(f"size {text!r} is not a whole number of {SECTOR}-byte sectors")
    return size


@dataclass(frozen=True)
class DataDisk:
    path: Path
    size: int | None = None  # None: DEFAULT_SIZE when created, any size when it exists


def parse(text: str) -> DataDisk:
    """argparse type of --data-disk: `PATH` or `PATH:SIZE` (the last colon starts the size,
    unless a slash follows it: then it is part of the path)."""
    path, colon, size = text.rpartition(":")
    if not colon or "/" in size:
        path, colon, size = text, "", ""
    try:
        if not path:
            raise ValueError(f"no image path in {text!r}: use PATH or PATH:SIZE")
        if "," in path:
            # qemu's -drive and cloud-hypervisor's --disk both separate options with commas.
            raise ValueError(f"{path}: a disk image path cannot contain a comma")
        return DataDisk(Path(path).absolute(), parse_size(size) if colon else None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def ensure(disk: DataDisk) -> bool:
    """Create the image sparse when it is missing (True) or check the existing one (False),
    which is never changed."""
    path = disk.path
    try:
        info = path.stat()
    except FileNotFoundError:
        _create(path, disk.size or DEFAULT_SIZE)
        return True
    except OSError as e:
        raise OnectlError(f"data disk {path}: {e.strerror}") from None
    if stat.S_ISBLK(info.st_mode):
        return False  # a block device: its size is the device's
    if not stat.S_ISREG(info.st_mode):
        raise OnectlError(f"data disk {path} is neither a file nor a block device")
    if disk.size is not None and info.st_size != disk.size:
        raise OnectlError(f"data disk {path} exists with {human(info.st_size)}, not "
                          f"{human(disk.size)}: an existing image is never resized; leave out "
                          f":SIZE to use it as it is")
    return False


def _create(path: Path, size: int) -> None:
    if not path.parent.is_dir():
        raise OnectlError(f"data disk {path}: directory {path.parent} does not exist")
    try:
        # O_EXCL: whatever appeared at the path since the stat is not overwritten.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise OnectlError(f"cannot create data disk {path}: {e.strerror}") from None
    try:
        os.ftruncate(fd, size)  # a hole of `size` bytes: no blocks are allocated
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise OnectlError(f"cannot make data disk {path} {human(size)} large: "
                          f"{e.strerror}") from None
    os.close(fd)
