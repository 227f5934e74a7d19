"""Removing trees iteratively (init/system/fstree.py): deeper than Python's recursion and than the
descriptor limit, symlinks never followed, mount points never entered."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from init.system import fstree


def _deep(top: Path, levels: int) -> Path:
    """A chain of `levels` one-letter directories made relative to a descriptor (the whole path
    is far past PATH_MAX), with a file at the bottom; returns `top`."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    return top


def test_a_tree_deeper_than_recursion_and_the_fd_limit_goes(tmp_path: Path) -> None:
    top = _deep(tmp_path / "deep", 3000)
    with pytest.raises((RecursionError, OSError)):  # what the store used before
        shutil.rmtree(top)
    fstree.remove_tree(top)
    assert not top.exists()


def test_symlinks_are_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    top = tmp_path / "t"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "link").symlink_to(outside)
    (top / "a" / "b" / "f").write_text("x")
    os.mkfifo(top / "a" / "fifo")
    fstree.remove_tree(top)
    assert not top.exists() and (outside / "keep").read_text() == "keep"
    fstree.remove_tree(top)  # missing: fine
    (tmp_path / "file").write_text("x")
    fstree.remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_mount_point_inside_is_not_entered(tmp_path: Path) -> None:
    top = tmp_path / "t"
    mnt = top / "sub" / "mnt"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "precious").write_text("x")
        with pytest.raises(OSError, match="mount point inside"):
            fstree.remove_tree(top)
        assert (mnt / "precious").read_text() == "x"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    fstree.remove_tree(top)
    assert not top.exists()


def test_as_a_user_read_only_directories_are_opened_up() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    base = Path(tempfile.mkdtemp())  # tmp_path's parents are closed to other users
    try:
        os.chmod(base, 0o755)
        top = base / "t"
        (top / "ro").mkdir(parents=True)
        (top / "ro" / "f").write_text("x")
        for p in (top, top / "ro", top / "ro" / "f"):
            os.chown(p, 65534, 65534)
        os.chmod(top, 0o555)
        os.chmod(top / "ro", 0o555)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, as nobody
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                fstree._empty(os.open(top, os.O_RDONLY | os.O_DIRECTORY), top)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert list(top.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_the_image_store_opens_over_a_deep_leftover(tmp_path: Path) -> None:
    """A 3000-level tree left in images/tmp (a pull that died) made Store.open raise
    RecursionError on every boot; now it goes, and a leftover that cannot go stays, logged."""
    from init.services.image.store import Store

    store = Store(tmp_path / "images")
    store.open()
    store.close()
    _deep(store.tmp / "unpack-dead", 3000)
    store = Store(tmp_path / "images")
    store.open()
    store.close()
    assert list(store.tmp.iterdir()) == []
    doomed = store.rootfs_dir / "deep"
    _deep(doomed, 3000)
    store.discard(doomed)
    assert not doomed.exists() and list(store.tmp.iterdir()) == []
