"""What a root container can do, in local mode with both runtimes (the VM test repeats it with the
shipped crun): the isolation probe (tests/fixtures/probe) runs as root in a pod and every door it
tries must be shut: vsock sockets, mknod of a disk, raw sockets, new namespaces, the kernel
keyring, mount, bpf. In local mode the disk behind it would be the host's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneproto import one_pb2
from tests.fixtures import probe
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.pods import CALL, HOST_PODS, Env, ctr, pod_env, run_pod, wait_state
from tests.fixtures.runtimes import pod_runtime

pytestmark = HOST_PODS

@pytest.fixture(params=["runc", "crun"])
def env(request: pytest.FixtureRequest, tmp_path: Path, image_registry: Registry,
        probe_image: Pushed) -> Iterator[Env]:
    with pod_env(tmp_path, pod_runtime(request.param, tmp_path),
                 f"{image_registry.address}/{probe_image.name}") as e:
        yield e


def test_a_root_container_meets_shut_doors(env: Env) -> None:
    # The major of a real disk of this host: what the container would open if mknod worked.
    major = os.major(os.stat("/").st_dev) or 8
    run_pod(env, "attacker", ctr("probe", env.image, "/bin/probe", str(major), "1024"))
    pod = wait_state(env, "attacker", one_pb2.POD_STATE_STOPPED, timeout=60)
    assert pod.containers[0].exit_code == 0, pod
    log = b"".join(m.data for m in env.stub.Logs(one_pb2.LogsRequest(pod_id="attacker"),
                                                 timeout=CALL)).decode()
    got = probe.parse(log)
    assert {k: got.get(k) for k in probe.SHUT} == probe.SHUT, log
    assert got["open-disk"] in ("ENOENT", "EPERM"), log  # no node was made to open
