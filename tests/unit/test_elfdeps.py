"""pyelftools checks on real binaries of this machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onebuild import elfdeps
from onebuild.tools import BuildError


def test_dynamic_binary_needs_loader_and_libc_until_they_are_added(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy("/usr/bin/ls", tree / "usr/bin/ls")
    problems = elfdeps.missing(tree)
    assert "interpreter /lib64/ld-linux-x86-64.so.2" in problems["/usr/bin/ls"]
    assert "libc.so.6" in problems["/usr/bin/ls"]
    with pytest.raises(BuildError, match="cannot load"):
        elfdeps.check_loadable(tree)
    added = elfdeps.add_host_libraries(tree)
    assert "lib/x86_64-linux-gnu/libc.so.6" in added
    assert "lib64/ld-linux-x86-64.so.2" in added
    elfdeps.check_loadable(tree)


def test_static_binary_is_static() -> None:
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static not installed")
    assert elfdeps.read(busybox).is_static
    assert not elfdeps.read(Path("/usr/bin/ls")).is_static


def test_not_an_elf_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x"
    bogus.write_bytes(b"\x7fELF garbage")
    with pytest.raises(BuildError, match="not a readable ELF"):
        elfdeps.read(bogus)
