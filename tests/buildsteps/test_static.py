"""The single static ELF (`doit static`): static per pyelftools, and it runs with nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from init.version import VERSION
from onebuild import elfdeps

STATIC = Path(__file__).resolve().parents[2] / "target" / "mvirt-one"


@pytest.fixture
def static_elf() -> Path:
    if not STATIC.exists():
        pytest.fail("target/mvirt-one missing: run `make one`")
    return STATIC


def test_it_is_static(static_elf: Path) -> None:
    info = elfdeps.read(static_elf)
    assert info.interp is None and info.needed == ()


@pytest.mark.host
def test_it_runs_in_an_otherwise_empty_root(static_elf: Path, tmp_path: Path) -> None:
    # staticx unpacks itself into /tmp and reads /proc/self/exe: give it just those.
    root = tmp_path / "root"
    for d in ("tmp", "proc"):
        (root / d).mkdir(parents=True)
    shutil.copy(static_elf, root / "mvirt-one")
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t proc proc {root}/proc && chroot {root} /mvirt-one --version"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == VERSION
