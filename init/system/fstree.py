"""Removing a directory tree that someone else made (an image, a container): iteratively.

`shutil.rmtree` recurses once per level (a Python frame and an open descriptor each): a tree a few
thousand levels deep, which an image or a container's `mkdir` loop makes in seconds, ends in
RecursionError or EMFILE and is left behind for good. Here one directory descriptor is open at a
time and the depth costs a list entry per level:
- the walk goes down with openat(O_NOFOLLOW) and back up with `..`, checked against the device and
  inode it came down through (a tree moved meanwhile stops the removal rather than leaving it);
- a symlink is removed, never followed; a mount point below the top is not entered (an overlay
  still mounted would otherwise be emptied through) but reported;
- as an unprivileged user, directories are made writable on the way down.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(name: str | Path, *, dir_fd: int | None = None) -> None:
    """Remove `name` (relative to `dir_fd` if given): a file, a symlink or a whole tree. Missing
    is fine; anything that cannot be removed raises OSError naming it."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, _DIR, dir_fd=dir_fd)
    try:
        _empty(fd, name)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _empty(top_fd: int, shown: str | Path) -> None:
    """Remove everything inside the directory `top_fd`, leaving it empty."""
    user = os.geteuid() != 0
    if user:
        os.fchmod(top_fd, 0o700)
    top = os.fstat(top_fd)
    fd = os.dup(top_fd)
    trail: list[tuple[str, int, int]] = []  # the names walked down, with their parents' ids
    try:
        while True:
            sub = _clear_files(fd)
            if sub is not None:
                child = os.open(sub, _DIR, dir_fd=fd)
                st = os.fstat(child)
                if st.st_dev != top.st_dev:
                    os.close(child)
                    raise OSError(errno.EBUSY, f"{shown}: a mount point inside "
                                  f"({'/'.join(n for n, _, _ in trail) + '/' + sub}): "
                                  "not removed")
                if user:
                    os.fchmod(child, 0o700)
                here = os.fstat(fd)
                trail.append((sub, here.st_dev, here.st_ino))
                os.close(fd)
                fd = child
                continue
            if not trail:
                return
            name, dev, ino = trail.pop()
            parent = os.open("..", _DIR, dir_fd=fd)
            st = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise OSError(errno.ESTALE, f"{shown}: the tree moved while it was removed")
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)


def _clear_files(fd: int) -> str | None:
    """Unlink every non-directory in `fd`; the name of a subdirectory if there is one."""
    while True:
        removed = False
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
                removed = True
        if not removed:
            return None  # a pass that found nothing: empty


def remove_logged(path: Path, log: logging.Logger) -> bool:
    """remove_tree for a clean-up that must go on: a failure is logged, not raised."""
    try:
        remove_tree(path)
    except OSError as e:
        log.error("cannot remove %s: %s", path, e)
        return False
    return True
