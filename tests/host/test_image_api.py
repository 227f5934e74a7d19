"""The image RPCs end to end: the init in local mode (`python -m init`), a grpcio client and the
`onectl pull / images / rmi` command line, against the loopback registry."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import LocalInit
from tests.fixtures.paths import ROOT

pytestmark = pytest.mark.host


@pytest.fixture
def init(tmp_path: Path) -> Iterator[tuple[LocalInit, str]]:
    sock = tmp_path / "api.sock"
    local = LocalInit(tmp_path, f"unix:{sock}")
    try:
        local.wait_for(r"phase ready")
        yield local, f"unix:{sock}"
    finally:
        local.proc.terminate()
        local.proc.wait(10)


def onectl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onectl", "-a", address, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_pull_list_remove_over_grpc(init: tuple[LocalInit, str], image_registry: Registry,
                                    busybox_image: Pushed) -> None:
    _, address = init
    ref = f"{image_registry.address}/{busybox_image.name}"
    with grpc.insecure_channel(address) as channel:
        stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
        progress = list(stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=120))
        statuses = [p.status for p in progress]
        assert statuses[0] == "resolving" and statuses[-1] == "done"
        assert "downloading" in statuses and "extracted" in statuses
        image = progress[-1].image
        assert image.digest == busybox_image.digest and list(image.references) == [ref]
        assert list(image.entrypoint) == ["/bin/sh"] and image.working_dir == "/tmp"
        assert dict(image.labels) == {"org.example.role": "fixture"}
        listed = stub.ListImages(one_pb2.Empty(), timeout=10).images
        assert [i.digest for i in listed] == [image.digest]
        for bad in ("Not/A Reference", "alpine@sha256:123"):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.PullImage(one_pb2.PullImageRequest(reference=bad), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.RemoveImage(one_pb2.RemoveImageRequest(reference="127.0.0.1:1/nothing"),
                             timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        removed = stub.RemoveImage(one_pb2.RemoveImageRequest(reference=ref), timeout=30)
        assert list(removed.removed) == [ref, image.digest]
        assert list(stub.ListImages(one_pb2.Empty(), timeout=10).images) == []


def test_onectl_pull_images_rmi(init: tuple[LocalInit, str], image_registry: Registry,
                                busybox_image: Pushed) -> None:
    _, address = init
    ref = f"{image_registry.address}/{busybox_image.name}"
    pulled = onectl(address, "pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert busybox_image.digest in pulled.stdout
    assert "downloading" in pulled.stderr and "extracted" in pulled.stderr  # the progress
    again = onectl(address, "pull", ref, "-o", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["digest"] == busybox_image.digest
    assert "downloading" not in again.stderr  # nothing transferred
    listed = onectl(address, "images")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split()[:2] == ["REFERENCE", "DIGEST"]
    assert row.split()[:2] == [ref, busybox_image.digest.removeprefix("sha256:")[:12]]
    as_json = json.loads(onectl(address, "images", "-o", "json").stdout)
    assert as_json["images"][0]["references"] == [ref]
    bad = onectl(address, "pull", "UPPER/case")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "lower case" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    removed = onectl(address, "rmi", ref)
    assert removed.returncode == 0 and f"removed {ref}" in removed.stdout
    missing = onectl(address, "rmi", ref)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
