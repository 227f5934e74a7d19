"""The initramfs as the guest gets it: a small root in ramfs and /usr as two squashfs images.

Everything large (the frozen init, libraries, crun, mke2fs) lives under /usr, reached from /lib,
/lib64, /bin and /sbin through links as on a merged-/usr Debian; the archive carries /usr only as
the images: /usr/lazy (what the boot does not read, xz) in one, the rest of /usr in the other
(zstd), their contents the tree's exactly. The tree is assembled from the frozen init this
checkout built (`doit init`) into a temporary directory; target/ is left alone.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
from pathlib import Path

import pytest

from onebuild import cpio, elfdeps, freeze, initramfs, runtime
from onebuild.tools import BuildError

pytestmark = pytest.mark.host


Built = tuple[Path, Path, Path, Path]  # tree, cpio.gz, /usr image, lazy image

# squashfs superblock: the compressor's id, a little-endian u16 at byte 20
SQUASHFS_XZ, SQUASHFS_ZSTD = 4, 6


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runtime")
    runtime.build("", out_dir=out)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, runtime_dir: Path) -> Built:
    """(tree, cpio.gz, usr image, lazy image) of one assemble + archive."""
    if not (freeze.ONEDIR / freeze.NAME).exists():
        pytest.fail(f"{freeze.ONEDIR} missing: run `doit init` first")
    base = tmp_path_factory.mktemp("usr-image")
    tree = base / "root"
    initramfs.assemble(tree, runtime_dir=runtime_dir)
    archive, image, lazy = base / "initramfs.cpio.gz", base / "usr.squashfs", base / "lazy.sqfs"
    initramfs.archive(tree, archive, usr_image=image, lazy_image=lazy)
    return tree, archive, image, lazy


def _listing(image: Path) -> dict[str, tuple[str, str]]:
    """path -> (kind, owner) of each entry of a squashfs image."""
    listing = subprocess.run(["unsquashfs", "-lls", "-n", "-d", "", str(image)],
                             capture_output=True, text=True, check=True).stdout
    in_image = {}
    for line in listing.splitlines():
        if line[:1] not in "-dl" or " /" not in line:
            continue
        mode, owner = line.split()[:2]
        path = line.split(" /", 1)[1].split(" -> ")[0]
        in_image[path] = (mode[0], owner)
    return in_image


def _in_tree(root: Path, *, skip: Path | None = None) -> dict[str, tuple[str, str]]:
    """The same for a directory of the tree; `skip`'s contents left out."""
    found = {}
    for p in root.rglob("*"):
        if skip is not None and skip in p.parents:
            continue
        kind = "l" if p.is_symlink() else "d" if p.is_dir() else "-"
        found[str(p.relative_to(root))] = (kind, "root/root")
    return found


def _superblock(image: Path) -> bytes:
    with image.open("rb") as f:
        header = f.read(22)
    assert header[:4] == b"hsqs"
    return header


def _compressor(image: Path) -> int:
    return int(struct.unpack_from("<H", _superblock(image), 20)[0])


def _fragments(image: Path) -> int:
    return int(struct.unpack_from("<I", _superblock(image), 16)[0])


def _cpio_names(archive: Path) -> dict[str, int]:
    """name -> size of each entry of a gzip'ed newc archive."""
    data = gzip.decompress(archive.read_bytes())
    names: dict[str, int] = {}
    pos = 0
    while True:
        header = data[pos:pos + 110]
        size, namesize = int(header[54:62], 16), int(header[94:102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += (4 - pos % 4) % 4
        if name == "TRAILER!!!":
            return names
        names[name] = size
        pos += size + (4 - size % 4) % 4


def test_the_tree_is_merged_usr_and_every_elf_lives_in_usr(built: Built) -> None:
    tree, *_ = built
    for link, target in initramfs.USR_LINKS.items():
        assert os.readlink(tree / link) == target
    outside = [p for p in elfdeps.elves(tree) if p.relative_to(tree).parts[0] != "usr"]
    assert outside == [tree / "init"]  # the preinit, which mounts /usr
    assert elfdeps.read(tree / "init").is_static


def test_one_copy_of_each_library(built: Built) -> None:
    tree, *_ = built
    bundled = tree / initramfs.INIT_DIR / "_internal" / "libz.so.1"
    assert bundled.is_symlink()
    assert bundled.resolve() == (tree / "usr/lib/x86_64-linux-gnu/libz.so.1").resolve()
    # relative, and inside /usr: it resolves the same on the image mounted at /usr
    assert not os.readlink(bundled).startswith("/")
    assert bundled.resolve().is_relative_to((tree / "usr").resolve())


def test_the_archive_holds_the_small_root_and_usr_as_the_image(
        built: Built) -> None:
    _, archive, image, lazy = built
    names = _cpio_names(archive)
    assert names[initramfs.USR_IMAGE] == image.stat().st_size
    assert names[initramfs.LAZY_IMAGE] == lazy.stat().st_size
    assert "usr" in names and not [n for n in names if n.startswith("usr/")]
    assert {"init", "etc/passwd", "dev/console", "lib", "lib64", "sbin"} <= set(names)
    # what stays in ramfs for the VM's life besides the images: a few hundred KB at most
    rest = sum(size for name, size in names.items()
               if name not in (initramfs.USR_IMAGE, initramfs.LAZY_IMAGE))
    assert rest < 400_000, rest


def test_the_images_are_the_tree_usr_and_usr_lazy(built: Built) -> None:
    tree, _, image, lazy = built
    # /usr/lazy is in the /usr image as an empty directory: the lazy image's mount point
    assert _listing(image) == _in_tree(tree / "usr", skip=tree / initramfs.LAZY)
    assert _listing(image)[initramfs.LAZY.removeprefix("usr/")] == ("d", "root/root")
    assert _listing(lazy) == _in_tree(tree / initramfs.LAZY)
    assert _compressor(image) == SQUASHFS_ZSTD
    assert _compressor(lazy) == SQUASHFS_XZ
    # A mount of an image with fragments pins a cache of three blocks for them (384 KiB).
    assert (_fragments(image), _fragments(lazy)) == (0, 0)


# What the boot reads before READY, by tree path (a pattern for the interpreter's version).
BOOT_READS = (f"{initramfs.INIT_DIR}/{freeze.NAME}", "usr/lib/mvirt-one/_internal/base_library.zip",
              "usr/lib/mvirt-one/_internal/libpython3.*.so.*",
              "usr/lib/mvirt-one/_internal/libzstd-decompress.so",
              "usr/lib/mvirt-one/_internal/python3.*/lib-dynload/_asyncio.*.so",
              "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libz.so.1",
              "usr/lib64/ld-linux-x86-64.so.2")


def test_the_lazy_files_are_links_into_the_lazy_image_only(built: Built) -> None:
    tree, _, image, lazy = built
    in_image, in_lazy = _listing(image), _listing(lazy)
    lazy_root = (tree / initramfs.LAZY).resolve()
    for pattern in initramfs.LAZY_FILES:
        links = sorted(tree.glob(pattern))
        assert links, pattern
        for link in links:
            rel = str(link.relative_to(tree / "usr"))
            # in the /usr image a relative link, resolving inside the tree to the lazy file
            assert in_image[rel] == ("l", "root/root")
            assert not os.readlink(link).startswith("/")
            target = link.resolve()
            assert target.is_file() and target.parent.is_relative_to(lazy_root)
            assert in_lazy[str(target.relative_to(lazy_root))] == ("-", "root/root")
    names = {Path(p).name for p in in_lazy}
    assert {"crun", "mke2fs", "libext2fs.so.2", "libcrypto.so.3", "libssl.so.3"} <= names
    # every link still works, whoever follows it: oci-runtime -> crun -> the lazy crun
    assert (tree / initramfs.OCI_RUNTIME_LINK).resolve().parent.is_relative_to(lazy_root)


def test_nothing_the_boot_reads_is_in_the_lazy_image(built: Built) -> None:
    tree, _, _, lazy = built
    lazy_root = (tree / initramfs.LAZY).resolve()
    for pattern in BOOT_READS:
        files = sorted(tree.glob(pattern))
        assert files, pattern
        for f in files:
            assert not f.resolve().is_relative_to(lazy_root), f
    in_lazy = {Path(p).name for p in _listing(lazy)}
    assert not {"libc.so.6", "base_library.zip", freeze.NAME} & in_lazy
    assert not [name for name in in_lazy if name.startswith("libpython")]


def test_a_lazy_library_the_boot_needs_fails_the_build(
        tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initramfs, "LAZY_FILES",
                        (*initramfs.LAZY_FILES, "usr/lib/x86_64-linux-gnu/libz.so.*"))
    with pytest.raises(BuildError, match=r"need libraries of /usr/lazy: .*libpython.*libz\.so\.1"):
        initramfs.assemble(tmp_path / "root", runtime_dir=runtime_dir)


def test_a_lazy_pattern_that_matches_nothing_fails_the_build(
        tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initramfs, "LAZY_FILES", (*initramfs.LAZY_FILES, "usr/bin/no-such-tool"))
    with pytest.raises(BuildError, match="no file in the tree matches usr/bin/no-such-tool"):
        initramfs.assemble(tmp_path / "root", runtime_dir=runtime_dir)


def test_prune_keeps_the_directory_and_drops_what_is_in_it(tmp_path: Path) -> None:
    (tmp_path / "keep" / "sub").mkdir(parents=True)
    (tmp_path / "keep" / "sub" / "f").write_text("x")
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "big").write_text("y" * 100)
    extra = tmp_path.parent / f"{tmp_path.name}.extra"
    extra.write_text("image")
    raw = io.BytesIO()
    cpio.write(raw, tmp_path, mtime=0, files={"usr.img": extra}, prune=("usr",))
    out = tmp_path.parent / f"{tmp_path.name}.cpio.gz"
    out.write_bytes(gzip.compress(raw.getvalue()))
    assert _cpio_names(out) == {"keep": 0, "keep/sub": 0, "keep/sub/f": 1, "usr": 0,
                                "usr.img": 5}
