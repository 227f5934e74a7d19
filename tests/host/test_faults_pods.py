"""Hostile images and racing clients against the pod service, in local mode with a real runtime:
the init answers meanwhile, the pod fails readably or is made whole, and nothing is left behind.
Root only (the runtime needs it)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from oneproto import one_pb2
from tests.fixtures.images import build
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import oci_runtime
from tests.fixtures.pods import CALL, Env, ctr, pod_env

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root")]


@pytest.fixture
def env(tmp_path: Path, image_registry: Registry, busybox_image: Pushed) -> Iterator[Env]:
    with pod_env(tmp_path, oci_runtime("runc", tmp_path),
                 f"{image_registry.address}/{busybox_image.name}") as e:
        yield e


def _odd_passwd(kind: str, host_file: Path, root: Path) -> None:
    build.busybox_tree(root)
    passwd = root / "etc" / "passwd"
    passwd.unlink()
    if kind == "fifo":
        os.mkfifo(passwd)
    else:
        passwd.symlink_to(host_file)  # the host's file, if resolved as the host sees it


@pytest.fixture(scope="session")
def odd_passwd_images(image_registry: Registry, oci_dir: Path) -> tuple[str, str, Path]:
    """Two images with `User: app`: one whose /etc/passwd is a FIFO, one whose /etc/passwd is
    a symlink to an absolute path that, on the host, is a passwd file naming `app`."""
    host_file = oci_dir / "host-passwd"
    host_file.write_text("app:x:4242:4242::/:/bin/sh\n")
    names = []
    for kind in ("fifo", "symlink"):
        layout = oci_dir / f"passwd-{kind}"
        build.umoci_image(layout, "latest",
                          [functools.partial(_odd_passwd, kind, host_file)],
                          ["--config.user", "app", "--architecture", "amd64"])
        build.skopeo_push(layout, "latest", image_registry.address, f"passwd-{kind}:latest")
        names.append(f"{image_registry.address}/passwd-{kind}:latest")
    return names[0], names[1], host_file


def _create_while_healthy(env: Env, pod_id: str, image: str) -> one_pb2.Pod:
    """CreatePod, with Health called all along: each must answer within 5 s."""
    request = one_pb2.CreatePodRequest(id=pod_id, containers=[ctr("c", image, "true")])
    with ThreadPoolExecutor(1) as pool:
        create = pool.submit(env.stub.CreatePod, request, timeout=CALL)
        while not create.done():
            assert env.stub.Health(one_pb2.Empty(), timeout=5).healthy
            time.sleep(0.1)
        return create.result()


def test_image_passwd_that_is_a_fifo_or_points_at_the_host(
        env: Env, odd_passwd_images: tuple[str, str, Path]) -> None:
    fifo, symlink, host_file = odd_passwd_images
    pod = _create_while_healthy(env, "fifo", fifo)
    assert pod.state == one_pb2.POD_STATE_FAILED, pod
    assert "/etc/passwd is not a regular file" in pod.error_message, pod
    pod = _create_while_healthy(env, "symlink", symlink)
    assert pod.state == one_pb2.POD_STATE_FAILED, pod
    assert "user 'app' of the image is not in its /etc/passwd" in pod.error_message, pod
    assert host_file.read_text().startswith("app:x:4242")  # there, but not the image's
