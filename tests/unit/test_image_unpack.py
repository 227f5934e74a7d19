"""Applying layer tars to a rootfs: file types, whiteouts, compression, and every way out refused.

The layers are built in Python (tests/fixtures/images/build.py) so each hostile case is exact.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from init.services.image.errors import CorruptLayer, DigestMismatch, UnsafeLayer
from init.services.image.unpack import LayerApplier
from tests.fixtures.images.build import Entry, compress, tar_layer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A sibling of the rootfs that layers aim at; it must stay as it was."""
    o = tmp_path / "outside"
    o.mkdir()
    (o / "victim").write_text("victim\n")
    yield o
    assert sorted(os.listdir(o)) == ["victim"]
    assert (o / "victim").read_text() == "victim\n"


def apply(root: Path, *layers: list[Entry], how: str = "none", check: bool = True) -> None:
    with LayerApplier(root) as applier:
        for entries in layers:
            tar = tar_layer(entries)
            blob, _ = compress(tar, how)
            applier.apply(io.BytesIO(blob), "sha256:" + hashlib.sha256(tar).hexdigest()
                          if check else None)


@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_file_types_and_metadata(root: Path, how: str) -> None:
    apply(root, [
        Entry("./", "dir", mode=0o755),
        Entry("bin/", "dir", mode=0o755),
        Entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=100),
        Entry("bin/alias", "symlink", target="tool"),
        Entry("bin/hard", "hardlink", target="bin/tool"),
        Entry("etc/localtime", "symlink", target="/usr/share/zoneinfo/UTC"),
        Entry("ro/", "dir", mode=0o555),
        Entry("ro/inside", data=b"child of a read-only directory\n"),
        Entry("dev/null", "chr", mode=0o666),
        Entry("run/fifo", "fifo", mode=0o600),
    ], how=how)
    tool = root / "bin" / "tool"
    st = tool.stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1000, 100)
    assert st.st_mtime == 1_700_000_000
    assert os.readlink(root / "bin" / "alias") == "tool"
    assert (root / "bin" / "hard").stat().st_ino == st.st_ino
    assert os.readlink(root / "etc" / "localtime") == "/usr/share/zoneinfo/UTC"
    assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o555
    assert (root / "ro" / "inside").exists()
    assert stat.S_ISFIFO((root / "run" / "fifo").lstat().st_mode)
    assert not (root / "dev" / "null").exists()  # device nodes are never made


def test_device_nodes_are_never_made(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    # As root too: a 0666 node of the data disk's major:minor in an image would let any user
    # of any container read every pod's files.
    caplog.set_level(logging.INFO, logger="mvirt-one")
    with LayerApplier(root) as applier:
        tar = tar_layer([Entry("dev/null", "chr"), Entry("dev/vda", "blk"),
                         Entry("ok", data=b"1")])
        applier.apply(io.BytesIO(tar))
        assert applier.skipped_devices == 2
    assert not (root / "dev" / "null").exists() and not (root / "dev" / "vda").exists()
    assert (root / "ok").exists()
    assert "device node dev/null skipped" in caplog.text


def test_whiteouts_and_opaque_directories(root: Path) -> None:
    apply(root, [
        Entry("a/", "dir", mode=0o755), Entry("a/file", data=b"1"),
        Entry("a/dir/", "dir", mode=0o755), Entry("a/dir/deep", data=b"2"),
        Entry("o/", "dir", mode=0o755), Entry("o/lower", data=b"3"),
        Entry("o/sub/", "dir", mode=0o755), Entry("o/sub/x", data=b"4"),
    ], [
        Entry("a/.wh.file"), Entry("a/.wh.dir"), Entry("a/.wh.never-existed"),
        # This layer's own entry comes before the opaque marker: it must survive it.
        Entry("o/upper", data=b"5"), Entry("o/.wh..wh..opq"),
    ])
    assert os.listdir(root / "a") == []
    assert os.listdir(root / "o") == ["upper"]


def test_replacing_entries_of_other_types(root: Path, outside: Path) -> None:
    apply(root, [
        Entry("d/", "dir", mode=0o755), Entry("d/x", data=b"x"),
        Entry("f", data=b"file"),
        Entry("s", "symlink", target=str(outside / "victim")),
    ], [
        Entry("d", data=b"now a file"),
        Entry("f/", "dir", mode=0o700),
        Entry("s", data=b"replaces the symlink, never writes through it"),
    ])
    assert (root / "d").read_text() == "now a file"
    assert (root / "f").is_dir()
    assert not (root / "s").is_symlink() and (root / "s").read_text().startswith("replaces")


def test_diff_id_is_checked(root: Path) -> None:
    with LayerApplier(root) as applier, pytest.raises(DigestMismatch, match="diff_id"):
        applier.apply(io.BytesIO(tar_layer([Entry("f", data=b"x")])), "sha256:" + "0" * 64)


@pytest.mark.parametrize("how", ["gzip", "zstd"])
@pytest.mark.parametrize("damage", ["truncated", "flipped", "trailing"])
def test_a_corrupt_compressed_layer_is_refused(root: Path, how: str, damage: str) -> None:
    """With no diff_id to check either: the decompressor's own error names the layer."""
    tar = tar_layer([Entry("./", "dir"), Entry("big", data=os.urandom(200_000)),
                     Entry("small", data=b"x")])
    blob, _ = compress(tar, how)
    middle = len(blob) // 2
    bad = {"truncated": blob[:middle],
           "flipped": blob[:middle] + bytes([blob[middle] ^ 0x10]) + blob[middle + 1:],
           "trailing": blob + b"garbage"}[damage]
    with LayerApplier(root) as applier, pytest.raises(CorruptLayer, match=f"not valid {how}"):
        applier.apply(io.BytesIO(bad))


@pytest.mark.parametrize("entries, message", [
    ([Entry("/etc/passwd", data=b"x")], "absolute path"),
    ([Entry("../outside/victim", data=b"x")], r"'\.\.' in path"),
    ([Entry("a/../../outside/victim", data=b"x")], r"'\.\.' in path"),
    ([Entry("h", "hardlink", target="../outside/victim")], r"'\.\.' in path"),
    ([Entry("h", "hardlink", target="/etc/passwd")], "absolute path"),
    ([Entry("h", "hardlink", target="missing")], "does not exist"),
    ([Entry("d/", "dir"), Entry("h", "hardlink", target="d")], "directory"),
    ([Entry("../.wh.outside")], r"'\.\.' in path"),
    ([Entry("a/.wh..")], "bad whiteout"),
    ([Entry("./", "file")], "root is not a directory"),
    ([Entry("f", data=b"x"), Entry("f/inside", data=b"x")], "not a directory"),
    ([Entry("l", "symlink", target="m"), Entry("m", "symlink", target="l"),
      Entry("l/x", data=b"x")], "too many levels of symlinks"),
    ([Entry("x" * 120 + "\0b", data=b"x")], "NUL byte"),  # in a PAX path record
    ([Entry("s", "symlink", target="y" * 120 + "\0z")], "NUL byte"),
    ([Entry("/".join(["d"] * 600) + "/f", data=b"x")], "deeper than 512 levels"),
    ([Entry("f", data=b"x", xattrs=(("trusted.overlay.opaque", "y"),))], "steer the overlay"),
    ([Entry("f", data=b"x", xattrs=tuple((f"user.k{i}", "v" * 16000) for i in range(5)))],
     "more than 65536 bytes of extended attributes"),
])
def test_refused(root: Path, outside: Path, entries: list[Entry], message: str) -> None:
    with pytest.raises(UnsafeLayer, match=message):
        apply(root, entries)


def test_paths_through_symlinks_resolve_inside(root: Path, outside: Path) -> None:
    """Absolute and relative symlinks are followed as the container sees them: from the rootfs,
    and `..` stops at its top. Nothing reaches `outside`."""
    apply(root, [
        Entry("slash", "symlink", target="/"),
        Entry("abs", "symlink", target=str(outside)),
        Entry("d/", "dir", mode=0o755),
        Entry("d/up", "symlink", target=".."),
        Entry("d/slashup", "symlink", target="/../../.."),
    ], [
        Entry("abs/victim", data=b"inside\n"),
        Entry("slash/etc/passwd", data=b"inside\n"),
        Entry("d/up/d/up/top", data=b"inside\n"),
        Entry("d/slashup/up2", data=b"inside\n"),
        Entry("link-through", "hardlink", target="slash/etc/passwd"),
        Entry("slash/.wh.top"),
    ])
    inner = root / str(outside).lstrip("/")
    assert (inner / "victim").read_text() == "inside\n"
    assert (root / "etc" / "passwd").read_text() == "inside\n"
    assert not (root / "top").exists()  # created, then whited out through the symlink
    assert (root / "up2").read_text() == "inside\n"
    assert (root / "link-through").stat().st_ino == (root / "etc" / "passwd").stat().st_ino


def test_relative_symlinks_above_the_root_are_kept_and_resolve_inside(root: Path,
                                                                     outside: Path) -> None:
    """As Docker keeps them: the link is stored verbatim; what is written through it stops at
    the rootfs's top, as the kernel stops `..` at a container's root."""
    # From root/a, "../../outside" would be the sibling `outside` if the host resolved it.
    apply(root, [
        Entry("a/", "dir", mode=0o755),
        Entry("a/esc", "symlink", target="../../outside"),
        Entry("far", "symlink", target="../" * 12 + "outside/victim"),
    ], [
        Entry("a/esc/victim", data=b"inside\n"),
        Entry("a/esc/new", data=b"inside\n"),
        Entry("hard", "hardlink", target="far"),
    ])
    assert os.readlink(root / "a" / "esc") == "../../outside"
    assert (root / "outside" / "victim").read_text() == "inside\n"
    assert (root / "outside" / "new").read_text() == "inside\n"
    assert os.readlink(root / "hard") == "../" * 12 + "outside/victim"  # the link, not through


def test_hardlink_to_a_symlink_links_the_symlink(root: Path, outside: Path) -> None:
    apply(root, [Entry("s", "symlink", target=str(outside / "victim")),
                 Entry("h", "hardlink", target="s")])
    assert os.readlink(root / "h") == str(outside / "victim")
    assert (root / "h").lstat().st_ino == (root / "s").lstat().st_ino


def test_xattrs_where_allowed(root: Path) -> None:
    apply(root, [Entry("f", data=b"x", xattrs=(("user.k", "v"), ("trusted.k", "w"),
                                               ("security.selinux", "s")))])
    try:
        assert os.getxattr(root / "f", "user.k") == b"v"
    except OSError as e:  # tmpfs without user xattrs: the layer still applies
        assert e.errno in (errno.ENOTSUP, errno.EPERM)
    # Only what Docker keeps: trusted.* and security.* other than capabilities are dropped.
    for dropped in ("trusted.k", "security.selinux"):
        with pytest.raises(OSError):
            os.getxattr(root / "f", dropped)


def test_the_xattrs_of_an_image_are_bounded(root: Path) -> None:
    # The bomb's shape (many files, each under the per-file bound): it fails at the image's
    # bound, before the kernel has been asked for more than that.
    per_file = tuple((f"user.k{i}", "v" * 12000) for i in range(5))  # ~60 KB a file
    with LayerApplier(root) as applier:
        layer = tar_layer([Entry(f"f{i}", data=b"x", xattrs=per_file) for i in range(100)])
        with pytest.raises(UnsafeLayer, match="extended attributes pass 4 MiB"):
            applier.apply(io.BytesIO(layer))
        assert applier.xattr_bytes <= (4 << 20) + 65536


def test_as_a_user_directories_stay_writable(root: Path) -> None:
    """Local mode without root: a read-only directory from one layer still takes the next
    layer's files (no CAP_DAC_OVERRIDE to rely on)."""
    with LayerApplier(root) as applier:
        applier.is_root = False
        applier.apply(io.BytesIO(tar_layer([Entry("ro/", "dir", mode=0o555)])))
        assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o755
        applier.apply(io.BytesIO(tar_layer([Entry("ro/later", data=b"x")])))
    assert (root / "ro" / "later").read_text() == "x"
