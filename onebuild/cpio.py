"""A reproducible newc cpio writer (the format the kernel unpacks as initramfs).

Written here rather than driving GNU cpio so that every byte is ours to decide: entries sorted,
owner 0:0, one fixed mtime, inode numbers in entry order, and device nodes that need no mknod
(the build does not have to run as root to produce /dev/console).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class DeviceNode:
    path: str  # relative to the archive root, e.g. "dev/console"
    mode: int  # including the file type bits (stat.S_IFCHR | 0o600)
    major: int
    minor: int


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


class NewcWriter:
    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0

    def entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (self._ino, mode, 0, 0, nlink, self._mtime, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + encoded + _pad(len(header) + len(encoded)))
        self._out.write(data + _pad(len(data)))

    def trailer(self) -> None:
        self.entry("TRAILER!!!", 0)


def _tree_entries(tree: Path, prune: Iterable[str] = ()) -> Iterable[tuple[str, Path]]:
    """Every entry under `tree`; a directory named in `prune` comes without its contents."""
    pruned = set(prune)
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            yield str(full.relative_to(tree)), full
        dirnames[:] = [d for d in dirnames
                       if str((Path(dirpath) / d).relative_to(tree)) not in pruned]


def normal_mode(st_mode: int) -> int:
    """Permissions from a git checkout depend on the umask; only the exec bit is content."""
    if stat.S_ISDIR(st_mode):
        return 0o1777 if st_mode & stat.S_ISVTX else 0o755
    return 0o755 if st_mode & 0o111 else 0o644


def write(out: BinaryIO, tree: Path, *, mtime: int, devices: Iterable[DeviceNode] = (),
          files: Mapping[str, Path] | None = None, prune: Iterable[str] = ()) -> None:
    """Archive `tree` plus `devices`, sorted by path; file modes kept, owners and times fixed.

    `files` adds regular files from elsewhere (archive path -> file); the directories named in
    `prune` are archived empty."""
    items: dict[str, Path | DeviceNode] = dict(_tree_entries(tree, prune))
    items.update(files or {})
    for dev in devices:
        items[dev.path] = dev
    writer = NewcWriter(out, mtime)
    for name in sorted(items):
        item = items[name]
        if isinstance(item, DeviceNode):
            writer.entry(name, item.mode, rdev=(item.major, item.minor))
            continue
        st = item.lstat()
        perms = normal_mode(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            writer.entry(name, stat.S_IFLNK | 0o777, os.readlink(item).encode())
        elif stat.S_ISDIR(st.st_mode):
            writer.entry(name, stat.S_IFDIR | perms)
        elif stat.S_ISREG(st.st_mode):
            writer.entry(name, stat.S_IFREG | perms, item.read_bytes())
        else:
            raise ValueError(f"{item}: unsupported file type in the initramfs tree")
    writer.trailer()
