"""Capacity: a data directory that is full fails a pull cleanly (RESOURCE_EXHAUSTED, needed vs
free), before it starts or midway (a compression bomb), and loses nothing else. Local mode with a
12 MiB tmpfs as the data directory: what a VM without a data disk has, smaller."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import LocalInit

pytestmark = pytest.mark.host

SIZE = 12 << 20


@pytest.fixture
def small_init(tmp_path: Path) -> Iterator[LocalInit]:
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(data)], check=True)
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}")
    try:
        init.wait_for(r"phase ready")
        yield init
    finally:
        init.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)


def _pull_error(stub: object, ref: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))  # type: ignore[attr-defined]
    return info.value


def _left_over(data: Path) -> list[str]:
    store = data / "images"
    return sorted(str(p.relative_to(store)) for d in ("tmp", "rootfs", "blobs")
                  for p in (store / d).rglob("*") if p.is_file())


def test_full_data_directory_fails_pulls_cleanly(small_init: LocalInit, tmp_path: Path,
                                                 image_registry: Registry, bomb_image: Pushed,
                                                 big_image: Pushed, busybox_image: Pushed
                                                 ) -> None:
    data = tmp_path / "data"
    reg = image_registry.address
    with small_init.client() as stub:
        # Checked before anything is fetched: needed vs free in the message.
        err = _pull_error(stub, f"{reg}/{big_image.name}")
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "needs at least" in str(err.details()) and "free" in str(err.details())
        assert _left_over(data) == []
        # A bomb passes the check and runs out while unpacking: what it wrote is removed.
        err = _pull_error(stub, f"{reg}/{bomb_image.name}")
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert "ran out of space" in str(err.details())
        assert _left_over(data) == []
        # CreatePod of that image: the pod is FAILED with the same reason.
        bomb = one_pb2.ContainerSpec(id="c", image=f"{reg}/{bomb_image.name}")
        pod = stub.CreatePod(one_pb2.CreatePodRequest(id="bomb", containers=[bomb]), timeout=120)
        assert pod.state == one_pb2.POD_STATE_FAILED and "ran out of space" in pod.error_message
        # Nothing else is lost and the init goes on: a small image still pulls and stays.
        progress = list(stub.PullImage(one_pb2.PullImageRequest(
            reference=f"{reg}/{busybox_image.name}"), timeout=120))
        assert progress[-1].image.digest == busybox_image.digest
        assert stub.Health(one_pb2.Empty(), timeout=10).healthy
        listed = [i.digest for i in stub.ListImages(one_pb2.Empty(), timeout=10).images]
        assert listed == [busybox_image.digest]
    # In memory the layer blobs go once unpacked: the image is not paid for twice.
    assert not list((data / "images" / "blobs").rglob("*")) or all(
        p.stat().st_size < 64 << 10 for p in (data / "images" / "blobs").rglob("*") if p.is_file())
