"""The frozen init (target/init, what the initramfs carries) pulls: catches modules the freeze
left out, which only show when the first pull imports them (http.client, tarfile, the zstd library,
and OpenSSL, which the init loads only then)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from init.services.image import zstd
from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import FROZEN, LocalInit

pytestmark = pytest.mark.host


def test_frozen_init_pulls_a_zstd_image(tmp_path: Path, image_registry: Registry,
                                        zstd_image: Pushed) -> None:
    frozen = Path(os.environ.get("MVIRT_ONE_FROZEN_INIT", FROZEN))
    if not frozen.exists():
        pytest.fail(f"{frozen} missing: build it with `.venv/bin/doit init` (make test does)")
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}", [str(frozen)])
    try:
        with init.client() as stub:
            assert "libcrypto" not in _maps(init.proc.pid)  # not loaded by the boot imports
            ref = f"{image_registry.address}/{zstd_image.name}"
            last = list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))[-1]
        assert last.status == "done" and last.image.digest == zstd_image.digest, init.log()
        rootfs = tmp_path / "data" / "images" / "rootfs" / zstd_image.digest.partition(":")[2]
        assert os.access(rootfs / "bin" / "busybox", os.X_OK)
        maps = _maps(init.proc.pid)
        assert "libcrypto" in maps
        # The bundle's own decompression-only libzstd, not the host's.
        assert f"/_internal/{zstd.LIBRARY}" in maps and "libzstd.so" not in maps
    finally:
        init.proc.terminate()
        init.proc.wait(10)


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()
