"""The on-disk image store: content-addressed blobs, per-image metadata, a rootfs per image.

    DATA_DIR/images/
      blobs/sha256/HEX        manifests, indexes, configs, layers; shared by every image
      images/HEX.json         one image (HEX = its manifest digest): layers, config, references
      rootfs/HEX/             the unpacked layers
      refs.json               reference → image digest
      tmp/                    work in progress, renamed into place when complete
      locks/                  flock(2) files: one per blob, rootfs, and for refs.json; "gc" is
                              held shared by every pull and exclusively while blobs are deleted

Everything becomes visible by rename(2), so a reader never sees a half-written blob, rootfs or
metadata file, and a crash leaves only tmp/ to clean. Blobs are renamed in only after their
digest was verified. Locks are flock(2) on files: they order threads (each takes its own open file
description) and processes alike, so two pulls of one image do the work once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from init.services.image.errors import DigestMismatch
from init.services.image.reference import check_digest, is_digest
from init.system import fstree, libc

LOG = logging.getLogger("mvirt-one")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.images = root / "images"
        self.rootfs_dir = root / "rootfs"
        self.tmp = root / "tmp"
        self.locks = root / "locks"
        self.refs_file = root / "refs.json"
        self._session: int | None = None

    def open(self) -> None:
        """Create the layout; clean tmp/ when no other process uses this store."""
        for d in (self.blobs, self.images, self.rootfs_dir, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        # Every user holds a shared lock for its life; whoever gets it exclusively first knows
        # tmp/ holds only leftovers of a crash.
        self._session = os.open(self.locks / "store", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._session, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            for entry in self.tmp.iterdir():
                # A leftover that cannot go stays in tmp/ (named in the log): the store works.
                try:
                    fstree.remove_tree(entry)
                except OSError as e:
                    LOG.error("image store: cannot remove the leftover %s: %s", entry, e)
        fcntl.flock(self._session, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._session is not None:
            os.close(self._session)
            self._session = None

    @contextlib.contextmanager
    def lock(self, name: str, *, shared: bool = False) -> Iterator[None]:
        fd = os.open(self.locks / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def pulling(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) by every pull: garbage collection waits for running pulls."""
        return self.lock("gc", shared=True)

    def image_lock(self, digest: str) -> contextlib.AbstractContextManager[None]:
        """Orders everything that makes, changes or deletes one image's rootfs and metadata."""
        return self.lock(f"rootfs-{_hex(digest)}")

    def _blob_lock(self, digest: str) -> contextlib.AbstractContextManager[None]:
        return self.lock(f"blob-{check_digest(digest).replace(':', '-')}")

    def _atomic_write(self, path: Path, write: Callable[[BinaryIO], object], prefix: str) -> None:
        """`write` fills a temporary file, which replaces `path` only once it is complete and
        synced; on any failure nothing changes."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=prefix)
        try:
            with os.fdopen(fd, "w+b") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # --- blobs ---------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexpart = check_digest(digest).partition(":")
        return self.blobs / algorithm / hexpart

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def ingest(self, digest: str, size: int | None, fill: Callable[[BinaryIO], object]) -> bool:
        """Make blob `digest` present: `fill` writes (and verifies) it into a temporary file,
        which is renamed into place only if `fill` returns. False if it was already there."""
        with self._blob_lock(digest):
            if self.has_blob(digest, size):
                return False
            path = self.blob_path(digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(path, fill, "blob-")
            return True

    def put_bytes(self, digest: str, data: bytes) -> bool:
        """Store a small verified document (manifest, index, config) under its digest; False
        if it was already there."""
        import hashlib

        algorithm, _, hexpart = check_digest(digest).partition(":")
        if hashlib.new(algorithm, data).hexdigest() != hexpart:
            raise DigestMismatch(f"{digest}: content does not match its digest")
        return self.ingest(digest, len(data), lambda f: f.write(data))

    def read_blob(self, digest: str, limit: int) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise DigestMismatch(f"{digest}: larger than {limit} bytes")
        return data

    def remove_blob(self, digest: str) -> None:
        with self._blob_lock(digest), contextlib.suppress(FileNotFoundError):
            self.blob_path(digest).unlink()

    def blob_digests(self) -> list[str]:
        return [f"{algo.name}:{p.name}" for algo in self.blobs.iterdir() if algo.is_dir()
                for p in algo.iterdir() if is_digest(f"{algo.name}:{p.name}")]

    # --- images and references ---------------------------------------------------------------

    def _atomic_json(self, path: Path, doc: Any) -> None:
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        self._atomic_write(path, lambda f: f.write(data), "json-")

    def meta_path(self, digest: str) -> Path:
        return self.images / f"{_hex(digest)}.json"

    def rootfs(self, digest: str) -> Path:
        return self.rootfs_dir / _hex(digest)

    def read_meta(self, digest: str) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(self.meta_path(digest).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return doc

    def write_meta(self, digest: str, doc: dict[str, Any]) -> None:
        self._atomic_json(self.meta_path(digest), doc)

    def metas(self) -> list[dict[str, Any]]:
        docs = []
        for path in sorted(self.images.glob("*.json")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                docs.append(json.loads(path.read_text()))
        return docs

    def is_complete(self, digest: str) -> bool:
        """The metadata is written last: with it and the rootfs there, the image is usable."""
        return self.meta_path(digest).exists() and self.rootfs(digest).is_dir()

    def free_bytes(self) -> int:
        """Free space for the init's writes: with CAP_SYS_RESOURCE (PID 1) that includes the
        blocks the filesystem keeps back from everyone else (datadisk.py's reserve)."""
        st = os.statvfs(self.root)
        return (st.f_bfree if libc.has_effective(libc.CAP_SYS_RESOURCE) else st.f_bavail) \
            * st.f_frsize

    def in_memory(self) -> bool:
        """On tmpfs or ramfs: every byte stored is a byte of RAM."""
        from init.system.mounts import fs_type

        return fs_type(self.root) in ("tmpfs", "ramfs", "rootfs")

    def referenced_blobs(self) -> set[str]:
        """Every blob some complete image's metadata names."""
        keep: set[str] = set()
        for meta in self.metas():
            keep.update(_blobs_of(meta))
        return keep

    def remove_unreferenced(self, digests: set[str]) -> None:
        """Remove those of `digests` that no image's metadata names (a failed pull's blobs)."""
        for digest in digests - self.referenced_blobs():
            self.remove_blob(digest)

    def drop_layer_blobs(self) -> bool:
        """Delete the layer blobs of complete images (their rootfs holds the content): in
        memory they would cost the image twice. Only when no pull runs (one that does may be
        about to unpack a shared layer); False then, and the last pull to finish does it."""
        fd = os.open(self.locks / "gc", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            for meta in self.metas():
                if self.is_complete(meta.get("digest", "")):
                    for layer in meta.get("layers", ()):
                        self.remove_blob(layer["digest"])
            return True
        finally:
            os.close(fd)

    def find_image(self, digest: str) -> str | None:
        """The complete local image whose manifest, or whose index, has this digest."""
        if self.is_complete(digest):
            return digest
        for meta in self.metas():
            if digest in meta.get("index_digests", ()) and self.is_complete(meta["digest"]):
                return str(meta["digest"])
        return None

    def delete_image(self, digest: str) -> None:
        """Delete an image's metadata and rootfs, then every blob no remaining image uses
        (layers are shared between images). Waits for running pulls."""
        self.forget_image(digest)
        self.collect_blobs()

    def forget_image(self, digest: str) -> None:
        """Delete an image's metadata and rootfs (its blobs stay until collect_blobs)."""
        with self.image_lock(digest):
            self.meta_path(digest).unlink(missing_ok=True)
            self.discard(self.rootfs(digest))

    def collect_blobs(self) -> None:
        """Delete every blob no image uses, once no pull runs (a pull's blobs belong to an
        image only when it ends)."""
        with self.lock("gc"):
            keep = self.referenced_blobs()
            for blob in set(self.blob_digests()):
                if blob not in keep:
                    self.remove_blob(blob)

    def read_refs(self) -> dict[str, str]:
        try:
            refs: dict[str, str] = json.loads(self.refs_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return refs

    def update_refs(self, change: Callable[[dict[str, str]], None]) -> dict[str, str]:
        with self.lock("refs"):
            refs = self.read_refs()
            change(refs)
            self._atomic_json(self.refs_file, refs)
            return refs

    def new_tmp_dir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))

    def discard(self, path: Path) -> None:
        """Move a tree into tmp/ (instantly invisible), then delete it."""
        if not path.exists():
            return
        doomed = self.new_tmp_dir("doomed-")
        os.replace(path, doomed / "x")
        fstree.remove_tree(doomed)


def _hex(digest: str) -> str:
    """The hex of a well-formed digest (InvalidReference otherwise): what names its files."""
    return check_digest(digest).partition(":")[2]


def _blobs_of(meta: dict[str, Any]) -> set[str]:
    blobs = {meta.get("digest", ""), meta.get("config_digest", "")}
    blobs.update(meta.get("index_digests", ()))
    blobs.update(la["digest"] for la in meta.get("layers", ()))
    blobs.discard("")
    return blobs

