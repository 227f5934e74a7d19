"""CreatePod+StartPod → RUNNING for a cached image against `crun run` of the same bundle, in one
run on this host (crun wrapped for hybrid cgroups as in test_pods_local.py). Prints the figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, STATIC_CRUN, LocalInit, oci_runtime

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(os.geteuid() != 0 or not STATIC_CRUN.exists(),
                                 reason="needs root and the static crun")]
ROUNDS = 5


def test_create_start_against_crun_run(tmp_path: Path, image_registry: Registry,
                                       busybox_image: Pushed) -> None:
    runtime = oci_runtime("crun", tmp_path)
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [*SOURCE_INIT, "--runtime", runtime])
    image = f"{image_registry.address}/{busybox_image.name}"
    pod_times: list[float] = []
    crun_times: list[float] = []
    try:
        with init.client() as stub:
            stub.PullImage(one_pb2.PullImageRequest(reference=image), timeout=120)
            for i in range(ROUNDS):
                spec = one_pb2.ContainerSpec(id="c", image=image,
                                             command=["busybox", "sleep", "60"])
                t0 = time.perf_counter()
                stub.CreatePod(one_pb2.CreatePodRequest(id=f"b{i}", containers=[spec]),
                               timeout=60)
                pod = stub.StartPod(one_pb2.StartPodRequest(id=f"b{i}"), timeout=60)
                pod_times.append(time.perf_counter() - t0)
                assert pod.state == one_pb2.POD_STATE_RUNNING, pod
                # The same bundle (config.json, the overlay rootfs), run by crun alone: the
                # container exits at once (`true`), so this is create + start + exit.
                bundle = tmp_path / "data" / "pods" / f"b{i}" / "containers" / "c"
                doc = json.loads((bundle / "config.json").read_text())
                doc["process"]["args"] = ["true"]
                alone = tmp_path / f"bundle{i}"
                alone.mkdir()
                (alone / "config.json").write_text(json.dumps(doc))
                t0 = time.perf_counter()
                subprocess.run([runtime, "--root", str(tmp_path / "crun-root"), "run",
                                "--bundle", str(alone), f"alone{i}"], check=True,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
                crun_times.append(time.perf_counter() - t0)
                stub.DeletePod(one_pb2.DeletePodRequest(id=f"b{i}", force=True), timeout=60)
    except grpc.RpcError as e:
        raise AssertionError(f"{e}\n{init.log()}") from e
    finally:
        init.stop()
    pod_ms = statistics.median(pod_times) * 1000
    crun_ms = statistics.median(crun_times) * 1000
    print(f"\nCreatePod+StartPod → RUNNING: median {pod_ms:.0f} ms; crun run of the same "
          f"bundle: median {crun_ms:.0f} ms; ratio {pod_ms / crun_ms:.2f} ({ROUNDS} rounds)")
    assert pod_ms < 20 * crun_ms
