"""A private root per container, so two containers of one image never see each other's writes.

overlayfs over the image's unpacked rootfs costs nothing up front (a copy costs the image's size
in time and space per container); the upper layer must be on a filesystem overlayfs accepts as
upper (tmpfs, ext4 — not ramfs, which lacks xattrs). Where the mount is refused the image is
copied instead.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from init.system import fstree, libc
from init.system.mounts import fs_type

LOG = logging.getLogger("mvirt-one")


def prepare(image_rootfs: Path, where: Path) -> tuple[Path, bool]:
    """Make `where/rootfs`; returns (the root path, whether it is an overlay mount)."""
    root = where / "rootfs"
    upper, work = where / "upper", where / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    try:
        # nodev: a device node in the image or made in the upper layer opens nothing (the
        # container's /dev is the runtime's own tmpfs); nosuid changes nothing a container sees
        # (noNewPrivileges already ignores set-id bits).
        libc.mount("overlay", str(root), "overlay", libc.MS_NODEV | libc.MS_NOSUID,
                   f"lowerdir={image_rootfs},upperdir={upper},workdir={work}")
        return root, True
    except OSError as e:
        LOG.warning("overlay over %s refused (%s): copying the image instead", image_rootfs, e)
    root.rmdir()
    shutil.copytree(image_rootfs, root, symlinks=True)
    return root, False


def unmount(where: Path) -> None:
    try:
        libc.umount(str(where / "rootfs"), libc.MNT_DETACH)
    except OSError as e:
        LOG.error("unmounting %s: %s", where / "rootfs", e)


def release(where: Path, mounted: bool) -> None:
    if mounted:
        unmount(where)
    fstree.remove_logged(where, LOG)


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
