"""Two builds from clean give byte-identical initramfs and UKI.

Each build runs in its own fresh clone of this repository's HEAD, so nothing is shared but the
cache outside the clone (the kernel and crun, which are keyed by their inputs)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("initramfs.cpio.gz", "mvirt-one.efi", "bzImage", "cmdline")

pytestmark = pytest.mark.host


def _build_in_fresh_clone(where: Path) -> dict[str, str]:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    doit = Path(sys.executable).parent / "doit"
    subprocess.run([str(doit), "uki"], cwd=where, check=True, capture_output=True)
    return {name: hashlib.sha256((where / "target" / name).read_bytes()).hexdigest()
            for name in OUTPUTS}


def test_two_clean_builds_are_byte_identical(tmp_path: Path) -> None:
    first = _build_in_fresh_clone(tmp_path / "a")
    second = _build_in_fresh_clone(tmp_path / "b")
    assert first == second
