"""The frozen init (target/init, what the initramfs carries) pulls: catches modules the freeze
left out, which only show when the first pull imports them (http.client, tarfile, zstandard)."""

# The fixtures are imported from tests/fixtures/images; pytest passes them by name.
# ruff: noqa: F811

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from tests.fixtures.images.fixtures import (  # noqa: F401 - pytest fixtures
    Pushed,
    busybox_image,
    image_registry,
    oci_dir,
    zstd_image,
)
from tests.fixtures.images.registry import Registry
from tests.host.test_api_local import FROZEN, LocalInit

try:
    from oneproto import one_pb2, one_pb2_grpc
except ImportError as e:  # generated, git-ignored
    raise ImportError(f"{e}: generate the stubs first with `.venv/bin/doit proto`") from e

pytestmark = pytest.mark.host


def test_frozen_init_pulls_a_zstd_image(tmp_path: Path, image_registry: Registry,
                                        zstd_image: Pushed) -> None:
    frozen = Path(os.environ.get("MVIRT_ONE_FROZEN_INIT", FROZEN))
    if not frozen.exists():
        pytest.fail(f"{frozen} missing: build it with `.venv/bin/doit init` (make test does)")
    sock = tmp_path / "api.sock"
    init = LocalInit(tmp_path, f"unix:{sock}", [str(frozen)])
    try:
        init.wait_for(r"phase ready")
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
            ref = f"{image_registry.address}/{zstd_image.name}"
            last = list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))[-1]
        assert last.status == "done" and last.image.digest == zstd_image.digest, init.log()
        rootfs = tmp_path / "data" / "images" / "rootfs" / zstd_image.digest.partition(":")[2]
        assert os.access(rootfs / "bin" / "busybox", os.X_OK)
    finally:
        init.proc.terminate()
        init.proc.wait(10)
