"""A real Debian minbase image: our rootfs equals what `umoci unpack` makes of the same image."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import pytest

from init.services.image import ImageService
from tests.fixtures.images.build import run
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.tools import tool

pytestmark = pytest.mark.host


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root: type, mode, owner, link target or content hash, device, links."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            what: object = None
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                what = h.hexdigest()
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                st.st_uid, st.st_gid, what, nlink)
    return out


def test_debian_rootfs_equals_umoci_unpack(image_service: ImageService, image_registry: Registry,
                                           debian_image: Pushed, tmp_path: Path) -> None:
    ref = f"{image_registry.address}/{debian_image.name}"
    image = asyncio.run(image_service.pull(ref))
    assert image.config.cmd == ("/bin/bash",)
    layout = tmp_path / "oci"
    run([tool("skopeo", "skopeo"), "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{ref}", f"oci:{layout}:bookworm"])
    run([tool("umoci", "umoci"), "unpack", "--image", f"{layout}:bookworm",
         str(tmp_path / "bundle")])
    ours = describe(image.rootfs)
    theirs = describe(tmp_path / "bundle" / "rootfs")
    # Device nodes are the one difference by design: umoci makes the image's, ours never does
    # (a container's /dev is the runtime's; see unpack.py).
    devices = {p for p, d in theirs.items() if stat.S_ISCHR(int(d[0])) or stat.S_ISBLK(int(d[0]))}
    assert devices and all(p.startswith("dev/") for p in devices), devices
    theirs = {p: d for p, d in theirs.items() if p not in devices}
    assert len(ours) > 5000  # a real Debian root
    assert ours.keys() == theirs.keys()
    different = {p: (ours[p], theirs[p]) for p in ours if ours[p] != theirs[p]}
    assert different == {}
    assert (image.rootfs / "etc" / "debian_version").read_text().startswith("12.")
