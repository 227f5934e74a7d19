"""The data disk: what is on a disk, which disk is chosen, formatting with the real mke2fs."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from init.system import datadisk
from init.system.reaper import Reaper


def _image(path: Path, size: int = 8 << 20, head: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(head)
    return str(path)


def _mkfs(path: str, label: str) -> None:
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    assert os.spawnv(os.P_WAIT, mke2fs, [mke2fs, "-q", "-F", "-t", "ext4", "-L", label,
                                         path]) == 0


def test_probe_tells_blank_ext4_and_other(tmp_path: Path) -> None:
    blank = _image(tmp_path / "blank")
    assert datadisk.probe(blank) == datadisk.Disk(blank, None, True)
    ext = _image(tmp_path / "ext")
    _mkfs(ext, "mvirt-one-data")
    assert datadisk.probe(ext) == datadisk.Disk(ext, "mvirt-one-data", False)
    other = _image(tmp_path / "other", head=b"\xeb\x3c\x90mkfs.fat")  # a FAT boot sector
    assert datadisk.probe(other) == datadisk.Disk(other, None, False)
    with pytest.raises(datadisk.DataDiskError, match="cannot read"):
        datadisk.probe(str(tmp_path / "missing"))


def _tail(path: Path, data: bytes, at_end: int, size: int = 8 << 20) -> str:
    """A disk of zeros but for `data` written `at_end` bytes before its end."""
    _image(path, size)
    with open(path, "r+b") as f:
        f.seek(size - at_end)
        f.write(data)
    return str(path)


def test_a_signature_at_the_end_is_not_blank(tmp_path: Path) -> None:
    size = 8 << 20
    # md 1.0 keeps its superblock 8 KiB before the end (aligned to 4 KiB), magic a92b4efc LE.
    md = _tail(tmp_path / "md10", bytes.fromhex("fc4e2ba9") + b"\1\0\0\0", 8192, size)
    # md 0.90: 64 KiB aligned, 64 KiB before the end.
    md090 = _tail(tmp_path / "md090", bytes.fromhex("fc4e2ba9"), 65536, size)
    # The GPT backup header in the last sector, its primary and the MBR gone.
    gpt = _tail(tmp_path / "gpt", b"EFI PART\0\0\1\0", 512, size)
    # DDF's anchor in the last sector (0xDE11DE11 big-endian).
    ddf = _tail(tmp_path / "ddf", bytes.fromhex("de11de11"), 512, size)
    # IMSM: "Intel Raid ISM Cfg Sig. " two sectors before the end.
    imsm = _tail(tmp_path / "imsm", b"Intel Raid ISM Cfg Sig. ", 1024, size)
    for disk in (md, md090, gpt, ddf, imsm):
        assert datadisk.probe(disk) == datadisk.Disk(disk, None, False), disk


def test_choose_by_label_then_a_blank_disk_with_our_serial(tmp_path: Path) -> None:
    other = _image(tmp_path / "a-other", head=b"LVM2 001")
    blank = _image(tmp_path / "b-blank")
    labelled = _image(tmp_path / "c-ext")
    ours = _image(tmp_path / "d-ours")
    _mkfs(labelled, "mvirt-one-data")
    serials = {ours: datadisk.SERIAL}

    def serial(path: str) -> str:
        return serials.get(path, "")

    disks = [other, blank, labelled, ours]
    assert datadisk.choose("LABEL=mvirt-one-data", disks, serial).path == labelled  # type: ignore[union-attr]
    # A blank disk is taken only with our serial: a stranger's blank disk is never formatted.
    assert datadisk.choose("LABEL=elsewhere", disks, serial).path == ours  # type: ignore[union-attr]
    assert datadisk.choose("LABEL=elsewhere", [other, blank], serial) is None
    # Our serial on a disk with a RAID superblock at its end: not formatted.
    raid = _tail(tmp_path / "e-raid", bytes.fromhex("fc4e2ba9"), 8192)
    serials[raid] = datadisk.SERIAL
    assert datadisk.choose("LABEL=elsewhere", [raid], serial) is None
    with pytest.raises(datadisk.DataDiskError, match="no such device"):
        datadisk.choose("/dev/nonexistent-disk", disks)


def test_disks_lists_whole_disks_only(tmp_path: Path) -> None:
    for name in ("vda", "vdb", "loop0", "ram0", "sda"):
        (tmp_path / name).mkdir()
    (tmp_path / "vda1").mkdir()
    (tmp_path / "vda1" / "partition").write_text("1\n")
    assert datadisk.disks(tmp_path) == ["/dev/sda", "/dev/vda", "/dev/vdb"]


def test_tmpfs_size_is_a_share_of_available_memory() -> None:
    assert datadisk.tmpfs_size("50%", 100 * 1024) == str(50 << 20)
    assert datadisk.tmpfs_size("10%", 1024) == str(datadisk.MIN_TMPFS)  # never tiny
    assert datadisk.tmpfs_size("64M", 1) == "64M"


def test_a_blank_disk_is_formatted_with_the_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    monkeypatch.setattr(datadisk, "MKE2FS", shutil.which("mke2fs") or "/sbin/mke2fs")
    monkeypatch.setattr(datadisk, "E2FSCK", shutil.which("e2fsck") or "/sbin/e2fsck")
    blank = _image(tmp_path / "disk", 32 << 20)

    async def run() -> None:
        reaper = Reaper()
        reaper.install(asyncio.get_running_loop())
        await datadisk._format(datadisk.probe(blank), "mvirt-one-data", reaper, tmp_path / "log")
        await datadisk.check(datadisk.probe(blank), reaper, tmp_path / "fsck.log")
        with open(blank, "r+b") as f:  # a superblock e2fsck cannot make sense of
            f.seek(1024 + 4)
            f.write(b"\xff" * 8)
        with pytest.raises(datadisk.DataDiskError, match="may not fix alone"):
            await datadisk.check(datadisk.probe(blank), reaper, tmp_path / "fsck.log")
        with pytest.raises(datadisk.DataDiskError, match=r"formatting .* failed"):
            await datadisk._format(datadisk.Disk(str(tmp_path / "nodir" / "x"), None, True),
                                   "x", reaper, tmp_path / "log2")

    asyncio.run(run())
    assert datadisk.probe(blank).label == "mvirt-one-data"
    # Sparse and lazy: formatting 32 MiB wrote far less than the journal's size.
    assert os.stat(blank).st_blocks * 512 < 8 << 20
