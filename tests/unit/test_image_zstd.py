"""The ctypes zstd reader, against streams made by the zstd command-line tool: with the library
the frozen init carries (linked here from Debian's static libzstd) and with the system's."""

from __future__ import annotations

import ctypes
import gc
import io
import os
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from init.services.image import zstd
from init.services.image.zstd import WINDOW_LOG_MAX, ZstdError, ZstdReader
from onebuild import zstdlib
from tests.fixtures.images.build import zstd_compress

DATA = b"".join(b"line %d of a layer, %x\n" % (i, i * 7919) for i in range(20_000))


@pytest.fixture(scope="module", params=["bundled", "system"])
def lib(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if request.param == "system":
        return zstd.load(zstd.SYSTEM_LIBRARY)
    out = tmp_path_factory.mktemp("zstdlib")
    zstdlib.build(out)
    return zstd.load(zstdlib.output(out))


def read_all(lib: ctypes.CDLL, blob: bytes, size: int | Callable[[], int] = -1,
             **kw: int) -> bytes:
    sizes = size if callable(size) else (lambda: size)
    with ZstdReader(io.BytesIO(blob), library=lib, **kw) as r:
        return b"".join(iter(lambda: r.read(sizes()), b""))


def skippable(payload: bytes, nibble: int = 0) -> bytes:
    return struct.pack("<II", 0x184D2A50 | nibble, len(payload)) + payload


@pytest.fixture(scope="module")
def frame() -> bytes:
    return zstd_compress(DATA, "-19")


def test_one_frame_any_read_size(lib: ctypes.CDLL, frame: bytes) -> None:
    assert read_all(lib, frame) == DATA
    assert read_all(lib, frame, 1 << 20) == DATA
    assert read_all(lib, frame[:], 10240) == DATA
    assert read_all(lib, zstd_compress(DATA[:5000]), 1) == DATA[:5000]


def test_frames_concatenated_and_skippable(lib: ctypes.CDLL) -> None:
    parts = [DATA[:1000], DATA[1000:50_000], b"", DATA[50_000:]]
    frames = [zstd_compress(p) for p in parts]
    blob = (skippable(b"metadata") + frames[0] + frames[1] + skippable(b"", 0xF) + frames[2]
            + frames[3] + skippable(b"x" * 100, 7))
    assert read_all(lib, blob, 4096) == DATA


def test_empty_content_and_only_skippable_frames(lib: ctypes.CDLL) -> None:
    assert read_all(lib, zstd_compress(b"")) == b""
    assert read_all(lib, skippable(b"nothing here")) == b""


def test_no_frame_at_all_is_an_error(lib: ctypes.CDLL) -> None:
    with pytest.raises(ZstdError, match="no frame"):
        read_all(lib, b"")


def test_large_stream_small_random_reads(lib: ctypes.CDLL) -> None:
    rng = random.Random(7)
    data = (DATA * 4) + rng.randbytes(3 << 20)  # ~4.6 MB, compressible and not
    blob = zstd_compress(data, "-3")
    assert len(blob) > zstd.IN_CHUNK * 20  # many input refills
    assert read_all(lib, blob, lambda: rng.randint(1, 70_000)) == data


def test_window_over_the_limit_is_refused(lib: ctypes.CDLL) -> None:
    # From a pipe zstd knows no size, so the frame header keeps the window --long asks for.
    at_limit = zstd_compress(DATA[:100_000], f"--long={WINDOW_LOG_MAX}")
    over = zstd_compress(DATA[:100_000], f"--long={WINDOW_LOG_MAX + 1}")
    assert read_all(lib, at_limit) == DATA[:100_000]
    with pytest.raises(ZstdError, match="frame 1: Frame requires too much memory"):
        read_all(lib, over)
    assert read_all(lib, over, window_log_max=WINDOW_LOG_MAX + 1) == DATA[:100_000]


def test_truncated_anywhere_is_an_error(lib: ctypes.CDLL) -> None:
    data = DATA[:30_000]
    blob = zstd_compress(data) + zstd_compress(data[:3000])
    for cut in [*range(0, len(blob) - 1, 7), len(blob) - 1]:
        with pytest.raises(ZstdError, match=r"truncated|no frame|not a zstd frame"):
            read_all(lib, blob[:cut], 8192)


def test_trailing_bytes_are_an_error(lib: ctypes.CDLL, frame: bytes) -> None:
    for tail in (b"\0", b"\0\0\0", b"\0\0\0\0", b"garbage after the frame", b"\x1f\x8b\x08\0"):
        with pytest.raises(ZstdError, match="bytes after frame 1 are not a zstd frame"):
            read_all(lib, frame + tail)


def test_legacy_frames_are_refused(lib: ctypes.CDLL, frame: bytes) -> None:
    # zstd v0.7's magic: Debian's libzstd would decode such a frame with its legacy decoders.
    legacy = struct.pack("<I", 0xFD2FB527) + bytes(60)
    with pytest.raises(ZstdError, match="at its start are not a zstd frame"):
        read_all(lib, legacy)
    with pytest.raises(ZstdError, match="after frame 1 are not a zstd frame"):
        read_all(lib, frame + legacy)


def test_bit_flips_never_give_other_data(lib: ctypes.CDLL) -> None:
    """Every flip is an error, or changes nothing that reaches the output (a window descriptor
    asking for more than needed, say): never silently different content. zstd's CLI writes a
    content checksum, which catches a flip in the compressed blocks."""
    data = DATA[:20_000]
    blob = zstd_compress(data)
    rng = random.Random(11)
    errors = 0
    for pos in range(len(blob)):
        flipped = bytearray(blob)
        flipped[pos] ^= 1 << rng.randrange(8)
        try:
            out = read_all(lib, bytes(flipped), 4096)
        except ZstdError:
            errors += 1
            continue
        assert out == data, f"flip at byte {pos} gave other data"
    assert errors > len(blob) * 0.9


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Counting:
    """The library, counting the contexts created and not yet freed."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self.live: set[int] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self._lib, name)

    def ZSTD_createDCtx(self) -> int:
        dctx = int(self._lib.ZSTD_createDCtx())
        self.live.add(dctx)
        return dctx

    def ZSTD_freeDCtx(self, dctx: int) -> int:
        self.live.remove(dctx)
        return int(self._lib.ZSTD_freeDCtx(dctx))


def _closed_early(lib: ctypes.CDLL, blob: bytes) -> None:
    with ZstdReader(io.BytesIO(blob), library=lib) as r:
        assert r.read(300_000) == DATA[:300_000]
    assert r.closed


def _failed(lib: ctypes.CDLL, blob: bytes) -> None:
    r = ZstdReader(io.BytesIO(blob[:len(blob) * 3 // 4]), library=lib)
    with pytest.raises(ZstdError, match="truncated"):
        while r.read(1 << 20):
            pass
    assert r.closed  # not closed by the caller: the error freed it


def _dropped(lib: ctypes.CDLL, blob: bytes) -> None:
    r = ZstdReader(io.BytesIO(blob), library=lib)
    r.read(300_000)
    del r


def _raised_inside(lib: ctypes.CDLL, blob: bytes) -> None:
    with pytest.raises(KeyError), ZstdReader(io.BytesIO(blob), library=lib) as r:
        r.read(300_000)
        raise KeyError("the caller failed")


@pytest.mark.parametrize("path", [_closed_early, _failed, _dropped, _raised_inside])
def test_contexts_are_freed_on_every_path(lib: ctypes.CDLL, frame: bytes,
                                          path: Callable[[ctypes.CDLL, bytes], None]) -> None:
    """Each context is freed as soon as its reader is done with; and the memory stays flat (a
    context left behind keeps ~0.4 MiB here: its tables and the window it filled)."""
    counting = _Counting(lib)
    path(counting, frame)  # type: ignore[arg-type]
    assert not counting.live
    for _ in range(5):  # the allocator's steady state first
        path(lib, frame)
    gc.collect()
    before = _rss()
    for _ in range(200):
        path(lib, frame)
    gc.collect()  # an exception's traceback holds its reader's buffers in a cycle
    assert _rss() - before < 16 << 20


def test_reader_after_the_end_and_after_close(lib: ctypes.CDLL, frame: bytes) -> None:
    r = ZstdReader(io.BytesIO(frame), library=lib)
    assert r.read() == DATA
    assert r.closed  # the end of the stream freed the context
    assert r.read(10) == b""
    r = ZstdReader(io.BytesIO(frame), library=lib)
    r.read(10)
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.read(10)


def test_library_path_frozen_and_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert zstd.library_path() == zstd.SYSTEM_LIBRARY
    monkeypatch.setattr(sys, "_MEIPASS", "/usr/lib/mvirt-one/_internal", raising=False)
    assert zstd.library_path() == Path("/usr/lib/mvirt-one/_internal/libzstd-decompress.so")
