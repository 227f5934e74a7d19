"""Apply layer tars to a rootfs, safely.

Nothing a layer says may create, change or remove anything outside the rootfs. Every path is
walked component by component from a file descriptor of the rootfs (`openat` with O_NOFOLLOW):
a symlink met on the way is resolved *inside* the rootfs, as the container itself would see it
(an absolute target starts again at the rootfs, `..` stops at it), never by the host's kernel.
The last component is never followed: an existing entry is replaced, not written through.

Refused (UnsafeLayer, the pull fails and the half-made rootfs is discarded):
- entry names that are absolute or contain `..`; names and link targets longer than PATH_MAX;
- headers, maps and entry counts past the bounds of tarstream.py (which say why);
- hard links whose target name is absolute or contains `..`, or is a directory.
Symlink targets are kept as they are, whatever they say, as Docker and containerd keep them: an
absolute one means the container's root (`/etc/localtime -> /usr/share/zoneinfo/UTC`), and a
relative one that climbs above the root stops there, as the kernel stops `..` at a container's
root. They are never followed on the host: here too they resolve inside the rootfs.

Layers: gzip, zstd or plain tar (told by magic bytes, as Docker does), whiteouts `.wh.NAME` and
opaque directories `.wh..wh..opq` against the layers below, hard links, symlinks, modes,
ownership (when root), FIFOs, the extended attributes Docker keeps (XATTRS_KEPT, bounded).
Device nodes are never made: a container's /dev is the runtime's, and a node an image ships (a
0666 node of the data disk) would be a door past every pod. The digest of the uncompressed
stream is checked against the config's diff_id.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from init.services.image.errors import DigestMismatch, UnsafeLayer
from init.services.image.tarstream import (
    COPY_CHUNK,
    MAX_ENTRIES,
    BoundedTarInfo,
    HashingReader,
    decompressed,
    members,
)
from init.system import fstree

LOG = logging.getLogger("mvirt-one")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
PATH_MAX = 4096
# Components of a path: real trees stay far below (a deep node_modules is ~100); a tree of
# thousands of one-letter levels fits in PATH_MAX and only costs whoever walks it.
MAX_DEPTH = 512
# Extended attributes, as Docker and containerd keep them: file capabilities and the user
# namespace. trusted.* and the rest of security.* are the host's (trusted.overlay.* would steer
# the overlay mounted over the rootfs), and tmpfs does not count them against its size: a layer
# of 2.8 MB could ask for GiBs of kernel memory. Bytes per file (names and values) and per image.
XATTRS_KEPT = ("security.capability", "user.")
XATTR_FORBIDDEN = "trusted.overlay."
MAX_XATTR_FILE = 64 << 10
MAX_XATTR_IMAGE = 4 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _split(name: str, what: str) -> list[str]:
    _check_length(name, what)
    if name.startswith("/"):
        raise UnsafeLayer(f"{what} {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"{what} {name!r}: '..' in path")
    if len(parts) > MAX_DEPTH:
        raise UnsafeLayer(f"{what} {name[:64]!r}...: deeper than {MAX_DEPTH} levels")
    return parts


def _check_length(name: str, what: str) -> None:
    if "\0" in name:
        raise UnsafeLayer(f"{what} {name[:64]!r}: a NUL byte in the name")
    # The kernel's PATH_MAX: no real path is longer, and walking one deeper than any real tree
    # only costs (removing such a tree recurses as deep).
    if len(name.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise UnsafeLayer(f"{what} {name[:64]!r}...: longer than {PATH_MAX} bytes")


class LayerApplier:
    """Applies layers, bottom first, to one rootfs directory."""

    def __init__(self, root: Path, *, max_entries: int = MAX_ENTRIES,
                 check: Callable[[], None] = lambda: None) -> None:
        """`check` is called before each entry: what it raises (a cancellation) stops."""
        self.root = root
        self.max_entries = max_entries
        self._check = check
        self._root_fd = os.open(root, _DIR_FLAGS)
        self.is_root = os.geteuid() == 0
        self.skipped_devices = 0
        self.xattr_bytes = 0  # kept so far, over every layer of the image
        self._warned: set[str] = set()
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self._forget()
        os.close(self._root_fd)

    def __enter__(self) -> LayerApplier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- walking inside the rootfs -----------------------------------------------------------

    def _open_dir(self, parts: list[str], *, create: bool) -> int:
        """An fd of the directory at `parts`, resolved inside the rootfs (symlinks included).
        Missing directories are created (0755) when `create`; otherwise FileNotFoundError."""
        todo = list(parts)
        stack: list[str] = []
        fd = os.dup(self._root_fd)
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    # Only from symlink targets (entry names with '..' are refused): stop at /.
                    if stack:
                        stack.pop()
                        os.close(fd)
                        fd = os.dup(self._root_fd)
                        todo = stack + todo
                        stack = []
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, 0o755, dir_fd=fd)
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise UnsafeLayer(f"{'/'.join(parts)}: too many levels of symlinks")
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        os.close(fd)
                        fd = os.dup(self._root_fd)
                        stack = []
                    todo = target.split("/") + todo
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafeLayer(f"{'/'.join(parts)}: {'/'.join(stack + [name])} is not a "
                                      "directory")
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
                stack.append(name)
            return fd
        except BaseException:
            os.close(fd)
            raise

    @contextmanager
    def _dir(self, parts: list[str], *, create: bool = True) -> Iterator[int]:
        # Consecutive tar entries mostly share a directory: its fd is kept until another one is
        # needed. Safe because every change goes through the fd of the changed entry's parent:
        # the cached directory itself can only be removed or replaced after the cache moved on.
        key = tuple(parts)
        if self._cached is None or self._cached[0] != key:
            fd = self._open_dir(parts, create=create)
            self._forget()
            self._cached = (key, fd)
        yield self._cached[1]

    def _forget(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _remove(self, name: str, dir_fd: int) -> None:
        """Remove an entry (a whole tree if a directory), never following a symlink."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            fstree.remove_tree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(msg, *args)

    # --- metadata ----------------------------------------------------------------------------

    def _chown(self, m: tarfile.TarInfo, fd: int | None, name: str, dir_fd: int) -> None:
        if not self.is_root:
            return  # local mode as a user: files are ours; the runtime maps ids if it must
        try:
            if fd is not None:
                os.fchown(fd, m.uid, m.gid)
            else:
                os.chown(name, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as e:
            self._warn_once("chown", "layer: cannot set owners (%s); keeping ours", e.strerror)

    def _kept_xattrs(self, m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        kept: list[tuple[str, bytes]] = []
        size = 0
        for key, text in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr.startswith(XATTR_FORBIDDEN):
                raise UnsafeLayer(f"layer entry {m.name!r}: extended attribute {attr[:64]!r} "
                                  "would steer the overlay")
            if "\0" in attr:
                raise UnsafeLayer(f"layer entry {m.name!r}: a NUL byte in an attribute name")
            if not (attr == XATTRS_KEPT[0] or attr.startswith(XATTRS_KEPT[1])):
                self._warn_once(f"xattr-dropped:{attr.split('.')[0]}",
                                "layer: extended attribute %s (and others of its kind) not kept",
                                attr[:64])
                continue
            value = text.encode("utf-8", "surrogateescape")
            size += len(attr) + len(value)
            if size > MAX_XATTR_FILE:
                raise UnsafeLayer(f"layer entry {m.name!r}: more than {MAX_XATTR_FILE} bytes of "
                                  "extended attributes")
            kept.append((attr, value))
        self.xattr_bytes += size
        if self.xattr_bytes > MAX_XATTR_IMAGE:
            raise UnsafeLayer(f"the image's extended attributes pass {MAX_XATTR_IMAGE >> 20} MiB "
                              f"(at {m.name!r})")
        return kept

    def _xattrs(self, m: tarfile.TarInfo, fd: int) -> None:
        for attr, value in self._kept_xattrs(m):
            try:
                os.setxattr(fd, attr, value)
            except OSError as e:
                # tmpfs/ramfs refuse user.*, unprivileged users trusted.*: not fatal.
                self._warn_once(f"xattr:{attr.split('.')[0]}", "layer: xattr %s not set (%s)",
                                attr, e.strerror)

    @staticmethod
    def _mtime_ns(m: tarfile.TarInfo) -> int:
        return int(m.mtime * 1_000_000_000)

    # --- one layer ---------------------------------------------------------------------------

    def apply(self, blob: BinaryIO, diff_id: str | None = None) -> None:
        """Apply one layer (a compressed or plain tar file); check its diff_id if given."""
        self._layer_paths: set[tuple[str, ...]] = set()
        dirs: list[tuple[list[str], int, int]] = []  # (path, mode, mtime in ns)
        with decompressed(blob) as raw:
            reader = HashingReader(raw)
            # Stream mode ("r|"): one pass, constant memory, no seeking in a compressed stream.
            with tarfile.open(fileobj=reader, mode="r|",  # type: ignore[call-overload]
                              tarinfo=BoundedTarInfo) as tf:
                for m in members(tf, self.max_entries):
                    self._check()
                    parts = _split(m.name, "layer entry")
                    if m.isdir():
                        dirs.append((parts, m.mode, self._mtime_ns(m)))
                    self._entry(tf, m, parts)
            reader.drain()  # the tar's end padding belongs to the diff_id too
        # Directory modes and times last: a read-only directory must still take its children,
        # and writing children changes a directory's mtime.
        # As a user (local mode), keep directories writable for us: a later layer must still be
        # able to add to a directory an earlier one made read-only (root needs no such help).
        keep = 0 if self.is_root else 0o700
        for parts, mode, mtime in reversed(dirs):
            with suppress(FileNotFoundError, UnsafeLayer), self._dir(parts, create=False) as fd:
                os.chmod(fd, (mode & 0o7777) | keep)
                os.utime(fd, ns=(mtime, mtime))
        if diff_id is not None:
            got = "sha256:" + reader.hasher.hexdigest()
            if got != diff_id:
                raise DigestMismatch(f"layer content {got} does not match the config's diff_id "
                                     f"{diff_id}")

    def _entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo, parts: list[str]) -> None:
        if not parts:  # "./": the rootfs itself
            if not m.isdir():
                raise UnsafeLayer(f"layer entry {m.name!r}: the root is not a directory")
            self._chown(m, self._root_fd, "", self._root_fd)
            return
        parent, base = parts[:-1], parts[-1]
        if base == OPAQUE:
            self._opaque(parent)
            return
        if base.startswith(WHITEOUT):
            victim = base[len(WHITEOUT):]
            if victim in ("", ".", ".."):
                raise UnsafeLayer(f"layer entry {m.name!r}: bad whiteout")
            with suppress(FileNotFoundError), self._dir(parent, create=False) as dfd:
                self._remove(victim, dfd)
            return
        self._layer_paths.add(tuple(parts))
        with self._dir(parent) as dfd:
            try:
                existing: os.stat_result | None = os.stat(base, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
                self._remove(base, dfd)
            if m.isdir():
                if existing is None or not stat.S_ISDIR(existing.st_mode):
                    os.mkdir(base, 0o700, dir_fd=dfd)
                fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
                try:
                    self._chown(m, fd, base, dfd)
                    self._xattrs(m, fd)
                finally:
                    os.close(fd)
            elif m.isreg():
                self._file(tf, m, base, dfd)
            elif m.issym():
                _check_length(m.linkname, f"layer entry {m.name!r}: symlink target")
                os.symlink(m.linkname, base, dir_fd=dfd)
                self._chown(m, None, base, dfd)
                os.utime(base, ns=(self._mtime_ns(m),) * 2, dir_fd=dfd, follow_symlinks=False)
            elif m.islnk():
                self._hardlink(m, base, dfd)
            elif m.isfifo():
                self._node(m, base, dfd)
            elif m.ischr() or m.isblk():
                self.skipped_devices += 1
                LOG.info("layer: device node %s skipped", m.name)
            else:
                LOG.warning("layer: %s: unsupported tar entry type %r skipped", m.name, m.type)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, base: str, dfd: int) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            src = tf.extractfile(m)
            if src is not None:
                while chunk := src.read(COPY_CHUNK):
                    _write_all(fd, chunk)
            self._chown(m, fd, base, dfd)
            os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears set-id bits
            self._xattrs(m, fd)
            os.utime(fd, ns=(self._mtime_ns(m),) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, base: str, dfd: int) -> None:
        target = _split(m.linkname, f"layer entry {m.name!r}: hard link target")
        if not target:
            raise UnsafeLayer(f"layer entry {m.name!r}: hard link to the root")
        try:
            # Not through the cache: `dfd`, the cached directory, is still in use.
            tfd = self._open_dir(target[:-1], create=False)
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    raise UnsafeLayer(f"layer entry {m.name!r}: hard link to a directory")
                # Without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(tfd)
        except FileNotFoundError:
            raise UnsafeLayer(f"layer entry {m.name!r}: hard link target {m.linkname!r} does "
                              "not exist in the rootfs") from None

    def _node(self, m: tarfile.TarInfo, base: str, dfd: int) -> None:
        os.mkfifo(base, 0o600, dir_fd=dfd)
        self._chown(m, None, base, dfd)
        # By name: the FIFO was just made by us in a directory only we write to, and opening
        # it to fchmod it could block.
        os.chmod(base, m.mode & 0o7777, dir_fd=dfd)
        os.utime(base, ns=(self._mtime_ns(m),) * 2, dir_fd=dfd, follow_symlinks=False)

    def _opaque(self, parent: list[str]) -> None:
        """Empty a directory of what lower layers put there (this layer's entries stay)."""
        with self._dir(parent) as dfd:
            for name in os.listdir(dfd):
                if tuple(parent + [name]) not in self._layer_paths:
                    self._remove(name, dfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
