"""Streaming zstd decompression over libzstd, through ctypes.

The guest only ever decompresses (zstd image layers), so the frozen init carries a libzstd linked
with the decompression entry points alone (onebuild/zstdlib.py builds it from Debian's static
library), instead of a Python zstd package that bundles a whole zstd, compressor included. The
library is loaded by an explicit path: ctypes.util.find_library would spawn processes.

A stream is one or more frames, zstd or skippable. Anything else where a frame should start is
refused, including zstd's legacy (pre-1.0) frames, which libzstd would otherwise decode:
containerd's decoder does not take them either, and their old decoders are code a hostile layer
has no business reaching.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any

LIBRARY = "libzstd-decompress.so"  # the frozen init's copy, beside its modules
# Not frozen (the host's tests, local mode): Debian's libzstd1, which every Debian has (dpkg
# depends on it), with the same stable API.
SYSTEM_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/libzstd.so.1")
# The entry points this module calls: the frozen init's library exports these and nothing else.
SYMBOLS = ("ZSTD_createDCtx", "ZSTD_freeDCtx", "ZSTD_DCtx_setParameter", "ZSTD_decompressStream",
           "ZSTD_isError", "ZSTD_getErrorName")

# libzstd's own default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT), which python-zstandard's decompressor
# keeps too: a frame may ask for a window of at most 128 MiB, whatever its header says. Frames
# made by `zstd` up to level 19 use 8 MiB at most; `--long` uses 128 MiB.
WINDOW_LOG_MAX = 27
_D_WINDOW_LOG_MAX = 100  # ZSTD_d_windowLogMax, a stable parameter of zstd.h

FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
SKIPPABLE_MAGIC = 0x184D2A50  # little-endian, the low 4 bits free (0x184D2A50..0x184D2A5F)
IN_CHUNK = 128 * 1024  # compressed bytes read at a time (about ZSTD_DStreamInSize)
# Smaller reads (tarfile asks for 10 KiB) are served from this much decompressed at a time: a
# ctypes call costs microseconds, a slice far less.
OUT_CHUNK = 128 * 1024
READ_ALL_CHUNK = 1 << 20


class ZstdError(Exception):
    """The stream is not valid zstd: corrupt, truncated, followed by something else, or a frame
    asks for more memory than WINDOW_LOG_MAX allows."""


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


def library_path() -> Path:
    """The frozen init's own copy if frozen (PyInstaller's sys._MEIPASS), else the system's."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / LIBRARY if bundle else SYSTEM_LIBRARY


@cache
def load(path: Path | None = None) -> ctypes.CDLL:
    """libzstd at `path` (default: library_path()) with the signatures of SYMBOLS declared."""
    lib = ctypes.CDLL(str(path or library_path()))
    size_t, ptr = ctypes.c_size_t, ctypes.c_void_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "ZSTD_createDCtx": (ptr, []),
        "ZSTD_freeDCtx": (size_t, [ptr]),
        "ZSTD_DCtx_setParameter": (size_t, [ptr, ctypes.c_int, ctypes.c_int]),
        "ZSTD_decompressStream": (size_t, [ptr, ctypes.POINTER(_OutBuffer),
                                           ctypes.POINTER(_InBuffer)]),
        "ZSTD_isError": (ctypes.c_uint, [size_t]),
        "ZSTD_getErrorName": (ctypes.c_char_p, [size_t]),
    }
    for name in SYMBOLS:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = signatures[name]
    return lib


def _is_frame_start(head: bytes) -> bool:
    return head == FRAME_MAGIC or (int.from_bytes(head, "little") & ~0xF) == SKIPPABLE_MAGIC


class ZstdReader:
    """A file-like reader of the decompressed bytes of the zstd stream `raw` (`read(n)`).

    The decompression context is freed on close(), on the first error, at the end of the
    stream, and when the reader is collected; use it as a context manager.
    """

    def __init__(self, raw: IO[bytes], *, library: ctypes.CDLL | None = None,
                 window_log_max: int = WINDOW_LOG_MAX) -> None:
        self._dctx: int | None = None
        self._ended = False  # the whole stream was read and found valid
        self._raw = raw
        self._lib = library or load()
        self._out = ctypes.create_string_buffer(0)
        self._pending = b""  # decompressed, not yet read: self._pending[self._pending_pos:]
        self._pending_pos = 0
        self._inbuf = ctypes.create_string_buffer(IN_CHUNK)
        self._in = _InBuffer(ctypes.addressof(self._inbuf), 0, 0)
        self._raw_eof = False
        self._at_frame_start = True  # the next input byte must begin a frame
        self._frames = 0
        self._dctx = self._lib.ZSTD_createDCtx()
        if not self._dctx:
            raise MemoryError("ZSTD_createDCtx failed")
        try:
            self._check(self._lib.ZSTD_DCtx_setParameter(self._dctx, _D_WINDOW_LOG_MAX,
                                                         window_log_max))
        except BaseException:
            self.close()
            raise

    # --- the file interface ---------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(READ_ALL_CHUNK), b""))
        if self._pending_pos < len(self._pending):
            return self._from_pending(n)
        if self._dctx is None:
            if self._ended:
                return b""  # EOF, as a file keeps saying
            raise ValueError("read from a closed ZstdReader")
        if n == 0:
            return b""
        try:
            if n >= OUT_CHUNK:
                return self._read(n)
            self._pending, self._pending_pos = self._read(OUT_CHUNK), 0
            return self._from_pending(n)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._pending = b""
        dctx, self._dctx = self._dctx, None
        if dctx is not None:
            self._lib.ZSTD_freeDCtx(dctx)

    @property
    def closed(self) -> bool:
        return self._dctx is None

    def __enter__(self) -> ZstdReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # --- decompression --------------------------------------------------------------------

    def _from_pending(self, n: int) -> bytes:
        start = self._pending_pos
        self._pending_pos = min(start + n, len(self._pending))
        return self._pending[start:self._pending_pos]

    def _read(self, n: int) -> bytes:
        if len(self._out) < n:
            self._out = ctypes.create_string_buffer(n)
        obuf = _OutBuffer(ctypes.addressof(self._out), n, 0)
        while obuf.pos == 0:
            if self._at_frame_start and not self._next_frame():
                self._ended = True
                self.close()  # the whole stream is read: the context is not needed any more
                return b""
            if self._in.pos == self._in.size:
                self._fill(1)
            had_input = self._in.pos < self._in.size
            ret = self._lib.ZSTD_decompressStream(self._dctx, ctypes.byref(obuf),
                                                  ctypes.byref(self._in))
            self._check(ret)
            if ret == 0:  # a frame is complete and all of it flushed
                self._at_frame_start = True
                self._frames += 1
            elif obuf.pos == 0 and not had_input:
                # Nothing in, nothing out, and the frame asks for more: the input ended early.
                raise ZstdError(f"zstd stream truncated in frame {self._frames + 1}")
        return ctypes.string_at(obuf.dst, obuf.pos)

    def _next_frame(self) -> bool:
        """At a frame boundary: True if a frame follows, False at a clean end of stream."""
        self._fill(4)
        left = self._in.size - self._in.pos
        if left == 0:
            if self._frames == 0:
                raise ZstdError("zstd stream holds no frame (empty or truncated)")
            return False
        head = ctypes.string_at(self._in.src + self._in.pos, min(left, 4))
        if not _is_frame_start(head):
            where = f"after frame {self._frames}" if self._frames else "at its start"
            raise ZstdError(f"zstd stream: the bytes {where} are not a zstd frame (starting "
                            f"{head.hex()})")
        self._at_frame_start = False
        return True

    def _fill(self, want: int) -> None:
        """Read compressed input until `want` bytes are buffered or the input ends."""
        left = self._in.size - self._in.pos
        if left >= want or self._raw_eof:
            return
        base = ctypes.addressof(self._inbuf)
        if self._in.pos:
            ctypes.memmove(base, base + self._in.pos, left)  # keep the unread tail in front
            self._in.pos, self._in.size = 0, left
        while self._in.size < want:
            data = self._raw.read(IN_CHUNK - self._in.size)
            if not data:
                self._raw_eof = True
                return
            ctypes.memmove(base + self._in.size, data, len(data))
            self._in.size += len(data)

    def _check(self, ret: int) -> None:
        if self._lib.ZSTD_isError(ret):
            name = self._lib.ZSTD_getErrorName(ret).decode(errors="replace")
            raise ZstdError(f"zstd frame {self._frames + 1}: {name}")
