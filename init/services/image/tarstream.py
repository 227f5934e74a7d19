"""Reading a layer's tar in one pass: decompression, the diff_id hash, and bounds on what tarfile
would otherwise hold in memory for a hostile layer.

tarfile reads a PAX header, a GNU long name and a sparse map whole into memory, as large as the
header says, chains extended headers by recursion, lets global PAX headers pile up, and keeps
every member it has read. Here, as Go's archive/tar (what Docker and containerd use) does, each of
those is bounded to 1 MiB, and a layer has at most MAX_ENTRIES entries: past a bound the layer is
refused (UnsafeLayer) instead of filling the init's memory.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol, cast

from init.services.image.errors import CorruptLayer, UnsafeLayer
from init.services.image.zstd import FRAME_MAGIC as ZSTD_MAGIC
from init.services.image.zstd import ZstdError, ZstdReader

COPY_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
MAX_SPECIAL = 1 << 20  # bytes of one PAX header, GNU long name/link or sparse map; all globals
MAX_CHAIN = 8  # extended headers before one entry (a name, a link name, PAX, sparse: 4 at most)
MAX_ENTRIES = 500_000  # per layer: far beyond real images (a Debian root has ~10 000)
_DEPTH = "_mvirt_one_header_depth"  # on the TarFile: extended headers being read


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class HashingReader:
    """Hashes what passes through: the diff_id of the uncompressed tar."""

    def __init__(self, raw: Reader) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


@contextmanager
def decompressed(f: BinaryIO) -> Iterator[Reader]:
    """A reader of the uncompressed tar in `f`, whatever the compression (magic bytes). A gzip
    or zstd stream that is corrupt, truncated or followed by other bytes raises CorruptLayer."""
    head = f.read(4)
    f.seek(0)
    if head.startswith(GZIP_MAGIC):
        import gzip
        import zlib

        with gzip.GzipFile(fileobj=f, mode="rb") as gz:
            yield _Checked(gz, "gzip", (gzip.BadGzipFile, EOFError, zlib.error))
    elif head == ZSTD_MAGIC:
        with ZstdReader(f) as zs:
            yield _Checked(zs, "zstd", (ZstdError,))
    else:
        yield f


class _Checked:
    """A decompressor's reader whose errors about its input become CorruptLayer."""

    def __init__(self, reader: Reader, kind: str, errors: tuple[type[Exception], ...]) -> None:
        self._reader = reader
        self._kind = kind
        self._errors = errors

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(n)
        except self._errors as e:
            raise CorruptLayer(f"layer is not valid {self._kind}: {e}") from e


class _Limited:
    """tarfile's stream, refusing to give more than `limit` bytes (a sparse map being read)."""

    def __init__(self, stream: Any, limit: int, what: str) -> None:
        self._stream = stream
        self._left = limit
        self._what = what

    def read(self, n: int) -> bytes:
        if n > self._left:
            raise UnsafeLayer(f"layer: {self._what} larger than {MAX_SPECIAL} bytes")
        self._left -= n
        return bytes(self._stream.read(n))

    def tell(self) -> int:
        return int(self._stream.tell())


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member parsing, with every header that tarfile would read whole bounded."""

    def _special(self, tf: tarfile.TarFile, what: str, parse: Callable[[], Any]) -> Any:
        if self.size > MAX_SPECIAL:
            raise UnsafeLayer(f"layer: {what} of {self.size} bytes (at most {MAX_SPECIAL})")
        depth = getattr(tf, _DEPTH, 0)
        if depth >= MAX_CHAIN:
            raise UnsafeLayer(f"layer: more than {MAX_CHAIN} extended headers before an entry")
        setattr(tf, _DEPTH, depth + 1)
        try:
            return parse()
        finally:
            setattr(tf, _DEPTH, depth)

    # tarfile's own hooks, overridden to bound them (positional: tarfile calls them so).
    def _proc_gnulong(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        parent = super()._proc_gnulong  # type: ignore[misc]
        return cast(tarfile.TarInfo, self._special(tf, "GNU long name", lambda: parent(tf)))

    def _proc_pax(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        parent = super()._proc_pax  # type: ignore[misc]
        member = cast(tarfile.TarInfo, self._special(tf, "PAX header", lambda: parent(tf)))
        # Global headers add up across the layer; they are usually empty.
        if sum(len(k) + len(v) for k, v in tf.pax_headers.items()) > MAX_SPECIAL:
            raise UnsafeLayer(f"layer: global PAX headers larger than {MAX_SPECIAL} bytes")
        return member

    def _proc_sparse(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        parent = super()._proc_sparse  # type: ignore[misc]
        return cast(tarfile.TarInfo, self._with_limit(tf, "GNU sparse map", lambda: parent(tf)))

    def _proc_gnusparse_10(self, member: tarfile.TarInfo, pax_headers: dict[str, str],
                           tf: tarfile.TarFile) -> None:
        parent = super()._proc_gnusparse_10  # type: ignore[misc]
        self._with_limit(tf, "PAX sparse map", lambda: parent(member, pax_headers, tf))

    @staticmethod
    def _with_limit(tf: tarfile.TarFile, what: str, parse: Callable[[], Any]) -> Any:
        stream = tf.fileobj
        tf.fileobj = _Limited(stream, MAX_SPECIAL, what)  # type: ignore[assignment]
        try:
            return parse()
        finally:
            tf.fileobj = stream


def members(tf: tarfile.TarFile, max_entries: int = MAX_ENTRIES) -> Iterator[tarfile.TarInfo]:
    """The entries of a tar opened in stream mode with BoundedTarInfo, at most `max_entries`;
    none is kept once the next is read."""
    count = 0
    while (member := tf.next()) is not None:
        # tarfile keeps every member it read: a list as long as the layer.
        tf.members.clear()  # type: ignore[attr-defined]
        count += 1
        if count > max_entries:
            raise UnsafeLayer(f"layer: more than {max_entries} entries")
        yield member
