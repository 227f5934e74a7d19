"""The frozen init (target/init, what the initramfs carries) pulls: catches modules the freeze
left out, which only show when the first pull imports them (http.client, tarfile, the zstd library,
and OpenSSL, which the init loads only then), and what its trimmed libpython lacks (unicodedata,
hence the stdlib's "idna" codec, which socket and ssl use for a registry named by host name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from init.services.image import zstd
from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed, TlsRegistries
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import FROZEN, LocalInit

pytestmark = pytest.mark.host


def test_frozen_init_pulls_zstd_and_over_tls_by_host_name(
        tmp_path: Path, image_registry: Registry, zstd_image: Pushed,
        tls_registries: TlsRegistries, busybox_image: Pushed) -> None:
    frozen = Path(os.environ.get("MVIRT_ONE_FROZEN_INIT", FROZEN))
    if not frozen.exists():
        pytest.fail(f"{frozen} missing: build it with `.venv/bin/doit init` (make test does)")
    tls = tls_registries.get("good")
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [str(frozen), "--ca-file", str(tls_registries.ca.cert)])
    try:
        with init.client() as stub:
            assert "libcrypto" not in _maps(init.proc.pid)  # not loaded by the boot imports
            for ref, image in ((f"{image_registry.address}/{zstd_image.name}", zstd_image),
                               (f"localhost:{tls.port}/{busybox_image.name}", busybox_image)):
                request = one_pb2.PullImageRequest(reference=ref)
                last = list(stub.PullImage(request, timeout=120))[-1]
                assert last.status == "done" and last.image.digest == image.digest, init.log()
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
