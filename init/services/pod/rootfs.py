"""A private root per container, so two containers of one image never see each other's writes.

overlayfs over the image's unpacked rootfs costs nothing up front (a copy costs the image's size
in time and space per container); the upper layer must be on a filesystem overlayfs accepts as
upper (tmpfs, ext4 — not ramfs, which lacks xattrs). Where the mount is refused the image is
copied instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from init.system import fstree, libc
from init.system.mounts import fs_type

LOG = logging.getLogger("mvirt-one")


def prepare(image_rootfs: Path, where: Path, writable: Path | None = None) -> tuple[Path, bool]:
    """Make `where/rootfs`, its writable layer in `writable` (default `where`); returns (the
    root path, whether it is an overlay mount)."""
    root = where / "rootfs"
    layer = writable or where
    upper, work = layer / "upper", layer / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    try:
        # nodev: a device node in the image or made in the upper layer opens nothing (the
        # container's /dev is the runtime's own tmpfs); nosuid changes nothing a container sees
        # (noNewPrivileges already ignores set-id bits).
        with _without_reserve():
            libc.mount("overlay", str(root), "overlay", libc.MS_NODEV | libc.MS_NOSUID,
                       f"lowerdir={image_rootfs},upperdir={upper},workdir={work}")
        return root, True
    except OSError as e:
        LOG.warning("overlay over %s refused (%s): copying the image instead", image_rootfs, e)
    root.rmdir()
    shutil.copytree(image_rootfs, root, symlinks=True)
    return root, False


@contextlib.contextmanager
def _without_reserve() -> Iterator[None]:
    """overlayfs writes to its upper layer with the credentials of whoever mounted it: mounted
    by a thread without CAP_SYS_RESOURCE, a container's writes cannot take the blocks the data
    disk keeps for the init (datadisk.py's reserve). Capabilities are per thread: this one gets
    it back at once."""
    try:
        had = libc.set_effective(libc.CAP_SYS_RESOURCE, False)
    except OSError:
        had = False
    try:
        yield
    finally:
        if had:
            libc.set_effective(libc.CAP_SYS_RESOURCE, True)


def writable_space(data_dir: Path, reserve: int) -> Path | None:
    """A data directory on a tmpfs (no disk): the containers' writable layers get a tmpfs of
    their own, `reserve` bytes smaller, so they cannot fill the one the init's images, logs
    and files are on. None where there is no such need (a disk keeps a reserve of its own)."""
    if fs_type(data_dir) != "tmpfs":
        return None
    st = os.statvfs(data_dir)
    size = max(st.f_blocks * st.f_frsize - reserve, reserve)
    layers = data_dir / "layers"
    layers.mkdir(mode=0o711, exist_ok=True)
    try:
        libc.mount("tmpfs", str(layers), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   f"size={size},mode=0711")
    except OSError as e:
        LOG.error("tmpfs for the containers' writable layers at %s: %s", layers, e)
        return None
    LOG.info("containers' writable layers on a tmpfs of %d MiB", size >> 20)
    return layers


def unmount(where: Path) -> None:
    try:
        libc.umount(str(where / "rootfs"), libc.MNT_DETACH)
    except OSError as e:
        LOG.error("unmounting %s: %s", where / "rootfs", e)


def release(where: Path, mounted: bool, writable: Path | None = None) -> None:
    if mounted:
        unmount(where)
    fstree.remove_logged(where, LOG)
    if writable is not None:
        fstree.remove_logged(writable, LOG)


def unmount_under(path: Path, mounts: str = "/proc/self/mounts") -> None:
    """Detach every mount below `path`, deepest first (overlays an earlier init left)."""
    try:
        with open(mounts) as f:
            points = [line.split()[1] for line in f if len(line.split()) > 2]
    except OSError:
        return
    prefix = str(path.resolve()).rstrip("/") + "/"
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        try:
            libc.umount(point, libc.MNT_DETACH)
        except OSError as e:
            LOG.warning("cannot unmount %s: %s", point, e)


def ensure_upper_fs(path: Path) -> None:
    """A data directory on the initramfs (ramfs: no xattrs, so no overlay upper there, and no
    size limit) gets a tmpfs for the pods, which takes both."""
    path.mkdir(parents=True, exist_ok=True)
    if fs_type(path) in ("rootfs", "ramfs"):
        try:
            libc.mount("tmpfs", str(path), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0711")
            LOG.info("pods on a tmpfs at %s", path)
        except OSError as e:
            LOG.error("tmpfs for the pods at %s: %s (copies instead of overlays)", path, e)
