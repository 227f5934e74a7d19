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

# zstd: a read decompresses one whole 128 KiB block, and decompression is what a boot waits for.
# Measured (bench.boot, TCG, 128 MiB, median of 5, one run each): against xz with the x86 branch
# filter, zstd makes the image 1.14 MB larger (10.3 vs 9.2 MB) and leaves 1.5 MiB less memory
# available, but reaches READY 1.5 s sooner on direct boot and 1.2 s sooner under OVMF. Larger
# blocks compress a little better but pull more into the page cache than was asked for, and
# squashfs keeps four blocks of cache per mount. The kernel reads both (kernel.config).
# No fragments (files' tails packed together into shared blocks): a mount of an image that has
# them pins a cache of three 128 KiB blocks for them in kernel memory; without, each tail is a
# small block of its own, and the image is 8 KB larger.
COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "19", "-b", "128K", "-no-fragments")
# For what the boot never reads (initramfs.LAZY): xz with the x86 branch filter, smaller than zstd
# (measured on that set: 2.79 MB against 3.18 MB), and only the first pull or pod waits for it.
# Small blocks and no fragments because a mount pins its caches for the VM's life: one data
# block, three fragment blocks when there are fragments, and xz's dictionary (the block size).
# With 1 MiB blocks the set is 2.67 MB but pins 5 MiB; at 128 KiB without fragments, 256 KiB.
LAZY_COMPRESSION = ("-comp", "xz", "-Xbcj", "x86", "-b", "128K", "-no-fragments")


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


def make(root: Path, out: Path, *, compression: tuple[str, ...] = COMPRESSION,
         mount_points: tuple[str, ...] = ()) -> None:
    """squashfs image of `root` at `out`: owners 0:0, one fixed time, no xattrs, reproducible.
    The directories in `mount_points` (relative to `root`) go in empty: another image is
    mounted there."""
    if not root.is_dir():
        raise BuildError(f"{root} is not a directory")
    _normalize_modes(root)
    epoch = str(reproducible.epoch())
    tmp = out.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    excluded = [arg for d in mount_points for arg in ("-e", f"{d}/*")]
    run(["mksquashfs", root, tmp, *compression, "-noappend", "-all-root", "-no-xattrs",
         "-mkfs-time", epoch, "-all-time", epoch, "-quiet", "-no-progress",
         *(["-wildcards", *excluded] if excluded else [])], quiet=True)
    os.replace(tmp, out)
