"""The initramfs as the guest gets it: a small root in ramfs and /usr as one squashfs image.

Everything large (the frozen init, libraries, crun, mke2fs) lives under /usr, reached from /lib,
/lib64, /bin and /sbin through links as on a merged-/usr Debian; the archive carries /usr only as
the image, whose contents are the tree's /usr exactly. The tree is assembled from the frozen init
this checkout built (`doit init`) into a temporary directory; target/ is left alone.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
from pathlib import Path

import pytest

from onebuild import cpio, elfdeps, freeze, initramfs, runtime

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(tree, cpio.gz, usr image) of one assemble + archive."""
    if not (freeze.ONEDIR / freeze.NAME).exists():
        pytest.fail(f"{freeze.ONEDIR} missing: run `doit init` first")
    base = tmp_path_factory.mktemp("usr-image")
    runtime_dir = base / "runtime"
    runtime.build("", out_dir=runtime_dir)
    tree = base / "root"
    initramfs.assemble(tree, runtime_dir=runtime_dir)
    archive, image = base / "initramfs.cpio.gz", base / "usr.squashfs"
    initramfs.archive(tree, archive, usr_image=image)
    return tree, archive, image


def _cpio_names(archive: Path) -> dict[str, int]:
    """name -> size of each entry of a gzip'ed newc archive."""
    data = gzip.decompress(archive.read_bytes())
    names, pos = {}, 0
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


def test_the_tree_is_merged_usr_and_every_elf_lives_in_usr(built: tuple[Path, Path, Path]) -> None:
    tree, _, _ = built
    for link, target in initramfs.USR_LINKS.items():
        assert os.readlink(tree / link) == target
    outside = [p for p in elfdeps.elves(tree) if p.relative_to(tree).parts[0] != "usr"]
    assert outside == [tree / "init"]  # the preinit, which mounts /usr
    assert elfdeps.read(tree / "init").is_static


def test_one_copy_of_each_library(built: tuple[Path, Path, Path]) -> None:
    tree, _, _ = built
    bundled = tree / initramfs.INIT_DIR / "_internal" / "libz.so.1"
    assert bundled.is_symlink()
    assert bundled.resolve() == (tree / "usr/lib/x86_64-linux-gnu/libz.so.1").resolve()
    # relative, and inside /usr: it resolves the same on the image mounted at /usr
    assert not os.readlink(bundled).startswith("/")
    assert bundled.resolve().is_relative_to((tree / "usr").resolve())


def test_the_archive_holds_the_small_root_and_usr_as_the_image(
        built: tuple[Path, Path, Path]) -> None:
    _, archive, image = built
    names = _cpio_names(archive)
    assert names[initramfs.USR_IMAGE] == image.stat().st_size
    assert "usr" in names and not [n for n in names if n.startswith("usr/")]
    assert {"init", "etc/passwd", "dev/console", "lib", "lib64", "sbin"} <= set(names)
    # what stays in ramfs for the VM's life besides the image: a few hundred KB at most
    rest = sum(size for name, size in names.items() if name != initramfs.USR_IMAGE)
    assert rest < 400_000, rest


def test_the_image_is_the_tree_usr(built: tuple[Path, Path, Path]) -> None:
    tree, _, image = built
    listing = subprocess.run(["unsquashfs", "-lls", "-n", "-d", "", str(image)],
                             capture_output=True, text=True, check=True).stdout
    in_image = {}
    for line in listing.splitlines():
        if line[:1] not in "-dl" or " /" not in line:
            continue
        mode, owner = line.split()[:2]
        path = line.split(" /", 1)[1].split(" -> ")[0]
        in_image[path] = (mode[0], owner)
    usr = tree / "usr"
    in_tree = {}
    for p in usr.rglob("*"):
        kind = "l" if p.is_symlink() else "d" if p.is_dir() else "-"
        in_tree[str(p.relative_to(usr))] = (kind, "root/root")
    assert in_image == in_tree


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
