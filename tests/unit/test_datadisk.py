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


def test_choose_by_label_then_first_blank(tmp_path: Path) -> None:
    other = _image(tmp_path / "a-other", head=b"LVM2 001")
    blank = _image(tmp_path / "b-blank")
    labelled = _image(tmp_path / "c-ext")
    _mkfs(labelled, "mvirt-one-data")
    disks = [other, blank, labelled]
    assert datadisk.choose("LABEL=mvirt-one-data", disks).path == labelled  # type: ignore[union-attr]
    assert datadisk.choose("LABEL=elsewhere", disks).path == blank  # type: ignore[union-attr]
    assert datadisk.choose("LABEL=elsewhere", [other]) is None
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
    blank = _image(tmp_path / "disk", 32 << 20)

    async def run() -> None:
        reaper = Reaper()
        reaper.install(asyncio.get_running_loop())
        await datadisk._format(datadisk.probe(blank), "mvirt-one-data", reaper, tmp_path / "log")
        with pytest.raises(datadisk.DataDiskError, match=r"formatting .* failed"):
            await datadisk._format(datadisk.Disk(str(tmp_path / "nodir" / "x"), None, True),
                                   "x", reaper, tmp_path / "log2")

    asyncio.run(run())
    assert datadisk.probe(blank).label == "mvirt-one-data"
    # Sparse and lazy: formatting 32 MiB wrote far less than the journal's size.
    assert os.stat(blank).st_blocks * 512 < 8 << 20
