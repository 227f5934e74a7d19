"""The cpio writer against GNU cpio, the reference reader of newc archives."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

from onebuild import cpio

DEVICES = (cpio.DeviceNode("dev/null", stat.S_IFCHR | 0o666, 1, 3),)


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 3)
    (root / "bin" / "tool").chmod(0o700)
    (root / "init").symlink_to("bin/tool")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "dev").mkdir()
    return root


def _archive(tree: Path, mtime: int = 1_700_000_000) -> bytes:
    out = io.BytesIO()
    cpio.write(out, tree, mtime=mtime, devices=DEVICES)
    return out.getvalue()


def test_gnu_cpio_reads_back_every_entry(tmp_path: Path) -> None:
    data = _archive(_tree(tmp_path / "src"))
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True,
                             check=True).stdout.decode()
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line
             for line in listing.splitlines()}
    assert sorted(lines) == ["bin", "bin/tool", "dev", "dev/null", "etc", "etc/hosts", "init",
                             "tmp"]
    assert lines["dev/null"].startswith("crw-rw-rw-") and "1,   3" in lines["dev/null"]
    assert lines["tmp"].startswith("drwxrwxrwt")
    assert lines["bin/tool"].startswith("-rwxr-xr-x")  # exec bit kept, umask noise dropped
    assert "root     root" in lines["etc/hosts"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=data, cwd=out,
                   check=True)
    assert (out / "bin" / "tool").read_bytes() == (tmp_path / "src/bin/tool").read_bytes()
    assert os.readlink(out / "init") == "bin/tool"


def test_same_tree_gives_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    first = _archive(tree)
    os.utime(tree / "etc" / "hosts", (0, 12345))
    (tree / "etc" / "hosts").chmod(0o600)  # a different umask in another checkout
    assert _archive(tree) == first
    assert _archive(tree, mtime=1) != first


def test_parent_directories_come_before_their_entries(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    (tree / "etc-extra").write_text("x")
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=_archive(tree),
                             capture_output=True, check=True).stdout.decode().split()
    for i, name in enumerate(listing):
        parent = os.path.dirname(name)
        if parent:
            assert parent in listing[:i], f"{name} before its parent"
