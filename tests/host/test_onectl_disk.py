"""`onectl run --data-disk PATH[:SIZE]` on the host: the image it creates is sparse, blank and of
the size asked for; an existing one is never touched; the printed cloud-hypervisor command line
attaches it. (test_onectl_machine.py checks what qemu makes of it.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.cli import onectl


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return onectl("run", "/k/one.efi", "--run-dir", "/run/vm1", "--print-cloud-hypervisor",
                  *args)


def test_a_missing_image_is_created_sparse_and_blank(tmp_path: Path) -> None:
    image = tmp_path / "data.img"
    r = _run("--data-disk", f"{image}:2G")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"onectl: created data disk {image} (2G, sparse and blank: the guest "
                        "formats it)\n")
    assert f" --disk path={image} " in r.stdout
    info = image.stat()
    assert info.st_size == 2 << 30
    assert info.st_blocks * 512 < 1 << 20  # sparse: no data blocks were written
    with image.open("rb") as f:
        assert f.read(1 << 20) == bytes(1 << 20)  # blank: no filesystem, the guest makes one


def test_default_size_and_an_existing_image_is_never_changed(tmp_path: Path) -> None:
    image = tmp_path / "data.img"
    assert _run("--data-disk", str(image)).returncode == 0
    assert image.stat().st_size == 4 << 30
    with image.open("r+b") as f:
        f.write(b"the guest's ext4")
    before = image.stat()
    again = _run("--data-disk", str(image))
    assert again.returncode == 0 and again.stderr == "", again.stderr
    resized = _run("--data-disk", f"{image}:8G")
    assert resized.returncode == 4
    assert resized.stderr == (f"onectl: data disk {image} exists with 4G, not 8G: an existing "
                              "image is never resized; leave out :SIZE to use it as it is\n")
    after = image.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with image.open("rb") as f:
        assert f.read(16) == b"the guest's ext4"


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    for value, message in ((f"{tmp_path}/d.img:2X", "bad size '2X'"),
                           (f"{tmp_path}/d.img:1M", "size '1M' is below the minimum of 16M"),
                           (f"{tmp_path}/a,b.img",
                            f"{tmp_path}/a,b.img: a disk image path cannot contain a comma")):
        r = _run("--data-disk", value)
        assert r.returncode == 2, r.stderr
        assert f"argument --data-disk: {message}" in r.stderr
    assert list(tmp_path.iterdir()) == []
    r = _run("--data-disk", f"{tmp_path}/absent/d.img")
    assert r.returncode == 4
    assert r.stderr == f"onectl: data disk {tmp_path}/absent/d.img: directory " \
        f"{tmp_path}/absent does not exist\n"
