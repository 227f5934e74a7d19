"""Bounded tar parsing: crafted layers whose headers would make tarfile read (and keep) as much as
they say are refused with UnsafeLayer; real ones, sparse files made by GNU tar included, pass."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from init.services.image.errors import UnsafeLayer
from init.services.image.tarstream import MAX_CHAIN, MAX_SPECIAL
from init.services.image.unpack import LayerApplier

BLOCK = tarfile.BLOCKSIZE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


def apply(root: Path, layer: bytes, **kw: int) -> None:
    with LayerApplier(root, **kw) as applier:
        applier.apply(io.BytesIO(layer))


def member(name: str, data: bytes = b"", fmt: int = tarfile.USTAR_FORMAT,
           pax: dict[str, str] | None = None, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = len(data), kind, 0o644
    if pax:
        info.pax_headers = pax
    body = data + b"\0" * (-len(data) % BLOCK)
    return info.tobuf(fmt, "utf-8", "surrogateescape") + body


def pax_header(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    data = b"".join(_record(k, v) for k, v in records.items())
    return member("././@PaxHeader", data, kind=kind)


def _record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def end() -> bytes:
    return b"\0" * (2 * BLOCK)


def test_pax_header_larger_than_the_bound(root: Path) -> None:
    layer = member("f", b"x", tarfile.PAX_FORMAT, {"comment": "c" * (MAX_SPECIAL + 1)}) + end()
    with pytest.raises(UnsafeLayer, match="PAX header of"):
        apply(root, layer)
    assert not (root / "f").exists()


def test_gnu_long_name_larger_than_the_bound(root: Path) -> None:
    layer = member("n" * (MAX_SPECIAL + 1), b"x", tarfile.GNU_FORMAT) + end()
    with pytest.raises(UnsafeLayer, match="GNU long name of"):
        apply(root, layer)


def test_names_longer_than_path_max(root: Path) -> None:
    deep = "d/" * 2048 + "f"  # a legal GNU long name, deeper than any real path
    with pytest.raises(UnsafeLayer, match="longer than 4096 bytes"):
        apply(root, member(deep, b"x", tarfile.GNU_FORMAT) + end())
    assert os.listdir(root) == []
    with pytest.raises(UnsafeLayer, match="longer than 4096 bytes"):
        apply(root, member("l", kind=tarfile.SYMTYPE, fmt=tarfile.PAX_FORMAT,
                           pax={"linkpath": "t" * 5000}) + end())


def test_chained_extended_headers(root: Path) -> None:
    fine = pax_header({"comment": "one"}) + member("ok", b"x") + end()
    apply(root, fine)
    assert (root / "ok").read_bytes() == b"x"
    chained = pax_header({"comment": "x"}) * (MAX_CHAIN + 1) + member("f", b"x") + end()
    with pytest.raises(UnsafeLayer, match="extended headers before an entry"):
        apply(root, chained)


def test_global_headers_do_not_pile_up(root: Path) -> None:
    half = "v" * (MAX_SPECIAL // 2)
    layer = b"".join(pax_header({f"key{i}": half}, tarfile.XGLTYPE) for i in range(3))
    with pytest.raises(UnsafeLayer, match="global PAX headers"):
        apply(root, layer + member("f", b"x") + end())


def test_old_gnu_sparse_map_larger_than_the_bound(root: Path) -> None:
    header = bytearray(member("sparse", b"", tarfile.GNU_FORMAT, kind=tarfile.GNUTYPE_SPARSE))
    header[482] = 1  # "isextended": extension blocks of the sparse map follow
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header[:BLOCK]):06o}\0 ".encode()
    extension = bytearray(BLOCK)
    extension[504] = 1  # and another one, and another...
    blocks = MAX_SPECIAL // BLOCK + 2
    with pytest.raises(UnsafeLayer, match="GNU sparse map larger"):
        apply(root, bytes(header) + bytes(extension) * blocks + end())


def test_pax_sparse_map_larger_than_the_bound(root: Path) -> None:
    sparse = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "f",
              "GNU.sparse.realsize": "10"}
    map_data = b"99999999\n" + b"0\n" * (MAX_SPECIAL // 2 + 1)
    layer = pax_header(sparse) + member("GNUSparseFile.0/f", map_data) + end()
    with pytest.raises(UnsafeLayer, match="PAX sparse map larger"):
        apply(root, layer)


def test_entry_count_is_bounded(root: Path) -> None:
    entries = [member(f"f{i}", b"x") for i in range(10)]
    apply(root, b"".join(entries) + end(), max_entries=10)
    with pytest.raises(UnsafeLayer, match="more than 10 entries"):
        apply(root, b"".join(entries) + member("one-more") + end(), max_entries=10)


def test_entries_are_not_kept(root: Path) -> None:
    """Memory stays flat however many entries a layer has (whiteouts: nothing is created)."""
    layer = b"".join(member(f".wh.f{i}") for i in range(20_000)) + end()
    tracemalloc.start()
    try:
        apply(root, layer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes for 20 000 entries"


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_real_sparse_files_still_unpack(tmp_path: Path, root: Path, fmt: str) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar missing")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
        f.seek(4096)
        f.write(b"middle")
    args = ["--format=gnu"] if fmt == "gnu" else ["--format=pax", "--sparse-version=1.0"]
    layer = subprocess.run([tar, "-C", str(src), "--sparse", *args, "-cf", "-", "holes"],
                           check=True, capture_output=True).stdout
    apply(root, layer)
    assert (root / "holes").read_bytes() == (src / "holes").read_bytes()
