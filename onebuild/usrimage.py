"""The tree's /usr as a compressed, read-only squashfs image.

The guest mounts it through a loop device (preinit/preinit.c): a page is decompressed when it is
first read, into page cache the kernel can drop and read again, so the guest holds the compressed
image plus what is in use, instead of the whole unpacked tree in ramfs. The kernel needs
CONFIG_BLK_DEV_LOOP and CONFIG_SQUASHFS with the compressor below (kernel.config).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from onebuild import cpio, reproducible
from onebuild.tools import BuildError, run

# xz with the x86 branch filter: the smallest image, which is what every guest holds in RAM and
# what the UKI's size is made of. 128 KiB blocks: a read decompresses one whole block, so larger
# blocks are a little smaller but pull more into the page cache than was asked for.
COMPRESSION = ("-comp", "xz", "-Xbcj", "x86", "-b", "128K")


def _normalize_modes(root: Path) -> None:
    """Modes as the cpio writer archives them (0755/0644 by the exec bit), whatever the umask
    of the build was: the image's bytes must not depend on it."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode):
                p.chmod(cpio.normal_mode(st.st_mode))
    root.chmod(cpio.normal_mode(root.lstat().st_mode))


def make(root: Path, out: Path) -> None:
    """squashfs image of `root` at `out`: owners 0:0, one fixed time, no xattrs, reproducible."""
    if not root.is_dir():
        raise BuildError(f"{root} is not a directory")
    _normalize_modes(root)
    epoch = str(reproducible.epoch())
    tmp = out.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    run(["mksquashfs", root, tmp, *COMPRESSION, "-noappend", "-all-root", "-no-xattrs",
         "-mkfs-time", epoch, "-all-time", epoch, "-quiet", "-no-progress"], quiet=True)
    os.replace(tmp, out)
