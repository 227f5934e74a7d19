"""Resources in local mode with both runtimes: why a container stopped (Completed, Error, Killed,
StartError), limits given at creation and changed by UpdateContainer, bad values refused before
anything is made, and pulls that cannot starve the other RPCs: five pulls from a registry that
trickles, plus a RemoveImage, while CreatePod of a cached image, ListImages and Logs answer."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.images.registry import Registry
from tests.fixtures.pods import CALL, HOST_PODS, Env, ctr, pod_env, run_pod, wait_state
from tests.fixtures.runtimes import pod_runtime

pytestmark = HOST_PODS


@pytest.fixture
def env(pods_both_runtimes: Env) -> Env:
    return pods_both_runtimes


def test_why_a_container_stopped(env: Env) -> None:
    run_pod(env, "why",
            ctr("done", env.image, "true"),
            ctr("failed", env.image, "sh", "-c", "exit 3"),
            ctr("held", env.image, "sh", "-c", "exec busybox sleep 600"))
    env.stub.StopPod(one_pb2.StopPodRequest(id="why", timeout_seconds=1), timeout=CALL)
    pod = wait_state(env, "why", one_pb2.POD_STATE_STOPPED)
    got = {c.id: (c.reason, c.exit_code, c.signal) for c in pod.containers}
    # `held` is its namespace's PID 1 (sleep, no handler): SIGTERM passes it by, SIGKILL ends it.
    assert got == {"done": ("Completed", 0, 0), "failed": ("Error", 3, 0),
                   "held": ("Killed", 137, 9)}, got
    assert all(c.finished_at_unix_ms > time.time() * 1000 - 120_000 for c in pod.containers)
    created = env.stub.CreatePod(one_pb2.CreatePodRequest(id="nostart", containers=[
        ctr("c", env.image, "/no/such/program")]), timeout=CALL)
    if created.state == one_pb2.POD_STATE_CREATED:  # crun finds out at start, runc at create
        created = env.stub.StartPod(one_pb2.StartPodRequest(id=created.id), timeout=CALL)
    assert created.containers[0].reason == "StartError", created


@pytest.fixture
def runc_env(tmp_path: Path, image_registry: Registry, busybox_image: Pushed) -> Iterator[Env]:
    with pod_env(tmp_path, pod_runtime("runc", tmp_path),
                 f"{image_registry.address}/{busybox_image.name}") as e:
        yield e


def test_limits_at_creation_and_in_place(runc_env: Env) -> None:
    """runc only: the static crun runs here in a private cgroup2 mount without the memory
    controller (this host's memory cgroup is v1), so `crun update` has no memory.max to write.
    The VM test updates a container under crun, where cgroup2 has every controller."""
    env = runc_env
    limits = one_pb2.Resources(memory_limit_bytes=64 << 20, cpu_limit_millis=500, pids_limit=50)
    spec = ctr("c", env.image, "sh", "-c", "exec busybox sleep 600")
    spec.resources.CopyFrom(limits)
    env.stub.CreatePod(one_pb2.CreatePodRequest(id="lim", containers=[spec]), timeout=CALL)
    pod = env.stub.StartPod(one_pb2.StartPodRequest(id="lim"), timeout=CALL)
    assert pod.containers[0].resources == limits
    config = (env.init.data_dir / "pods" / "lim" / "containers" / "c" / "config.json").read_text()
    assert '"limit": 67108864' in config and '"quota": 50000' in config
    new = one_pb2.Resources(memory_limit_bytes=96 << 20, cpu_limit_millis=250)
    got = env.stub.UpdateContainer(one_pb2.UpdateContainerRequest(
        pod_id="lim", container_id="c", resources=new), timeout=CALL)
    assert got.resources == new and got.state == one_pb2.CONTAINER_STATE_RUNNING
    # Refused before anything is made or changed.
    for bad in (one_pb2.Resources(memory_limit_bytes=1024), one_pb2.Resources(cpu_limit_millis=1)):
        with pytest.raises(grpc.RpcError) as info:
            env.stub.UpdateContainer(one_pb2.UpdateContainerRequest(
                pod_id="lim", container_id="c", resources=bad), timeout=CALL)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        spec = ctr("c", env.image, "true")
        spec.resources.CopyFrom(bad)
        with pytest.raises(grpc.RpcError) as info:
            env.stub.CreatePod(one_pb2.CreatePodRequest(id="bad", containers=[spec]),
                               timeout=CALL)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        env.stub.GetPod(one_pb2.GetPodRequest(id="bad"), timeout=CALL)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_slow_pulls_do_not_starve_the_other_rpcs(env: Env, image_proxy: Proxy,
                                                 image_registry: Registry,
                                                 busybox_image: Pushed, zstd_image: Pushed,
                                                 busybox_v2s2_image: Pushed,
                                                 layered_image: Pushed, bomb_image: Pushed,
                                                 big_image: Pushed) -> None:
    # The cached images, pulled directly from the registry first.
    env.stub.CreatePod(one_pb2.CreatePodRequest(id="warm", containers=[
        ctr("c", env.image, "true")]), timeout=CALL)
    doomed = f"{image_registry.address}/{zstd_image.name}"
    list(env.stub.PullImage(one_pb2.PullImageRequest(reference=doomed), timeout=CALL))
    image_proxy.trickle = 4.0  # 16 KiB/min is ~a byte every 4 s
    # More pulls than asyncio's default executor has threads here (cpus + 4), each reference
    # its own pull: by tag and by digest.
    images = (busybox_image, busybox_v2s2_image, layered_image, bomb_image, big_image)
    refs = [image.name for image in images]
    refs += [f"{image.name.split(':')[0]}@{image.digest}" for image in images]
    slow = [f"{image_proxy.address}/{ref}" for ref in refs]
    assert len(slow) > (os.cpu_count() or 1) + 4
    streams = [env.stub.PullImage(one_pb2.PullImageRequest(reference=ref), timeout=CALL)
               for ref in slow]
    readers = [threading.Thread(target=lambda s=s: [None for _ in s], daemon=True)
               for s in streams]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 30
    while len(image_proxy.requests("GET", "blobs")) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    remover = threading.Thread(target=lambda: env.stub.RemoveImage(
        one_pb2.RemoveImageRequest(reference=doomed), timeout=CALL), daemon=True)
    try:
        # Every answer below within 5 s while the pulls hold their threads.
        for call in (
            lambda: env.stub.CreatePod(one_pb2.CreatePodRequest(id="cached", containers=[
                ctr("c", env.image, "true")]), timeout=5),
            lambda: env.stub.ListImages(one_pb2.Empty(), timeout=5),
            lambda: list(env.stub.Logs(one_pb2.LogsRequest(pod_id="warm"), timeout=5)),
            lambda: env.stub.DeletePod(one_pb2.DeletePodRequest(id="cached"), timeout=5),
        ):
            started = time.monotonic()
            call()
            assert time.monotonic() - started < 5
        # RemoveImage waits for the pulls before blobs go; CreatePod of a cached image must not
        # wait behind it.
        remover.start()
        deadline = time.monotonic() + 30
        while doomed.split("/", 1)[1] in str(env.stub.ListImages(one_pb2.Empty(), timeout=5)):
            assert time.monotonic() < deadline, "the image was not removed"
            time.sleep(0.2)
        started = time.monotonic()
        env.stub.CreatePod(one_pb2.CreatePodRequest(id="again", containers=[
            ctr("c", env.image, "true")]), timeout=5)
        assert time.monotonic() - started < 5
        assert remover.is_alive(), "RemoveImage did not wait for the pulls to collect blobs"
    finally:
        for s in streams:
            s.cancel()
        image_proxy.trickle = None


def test_stats_and_events_over_grpcio(env: Env) -> None:
    """Events as they happen (a reader started first), then Stats of a container that wrote."""
    seen: list[one_pb2.Event] = []
    stream = env.stub.Events(one_pb2.EventsRequest(), timeout=CALL)

    def follow() -> None:
        try:
            for event in stream:
                seen.append(event)
        except grpc.RpcError:
            pass  # cancelled at the end

    stream.initial_metadata()  # sent once the init listens for us
    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    run_pod(env, "busy", ctr("c", env.image, "sh", "-c",
                             "busybox dd if=/dev/zero of=/tmp/f bs=1024 count=2048 2>/dev/null; "
                             "echo written; exec busybox sleep 600"))
    deadline = time.monotonic() + 30
    while b"written" not in b"".join(m.data for m in env.stub.Logs(
            one_pb2.LogsRequest(pod_id="busy"), timeout=CALL)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    got = env.stub.Stats(one_pb2.StatsRequest(pod_id="busy"), timeout=CALL)
    (pod,) = got.pods
    (c,) = pod.containers
    assert c.container_id == "c" and c.log_bytes == len(b"written\n")
    assert c.writable_layer_bytes >= 2 << 20  # the 2 MiB it wrote over its image
    assert got.vm.memory_total_bytes > got.vm.memory_available_bytes > 0
    assert got.vm.cpus >= 1 and got.vm.data_free_bytes > 0
    env.stub.StopPod(one_pb2.StopPodRequest(id="busy", timeout_seconds=1), timeout=CALL)
    deadline = time.monotonic() + 30
    while not any(e.kind == "pod_state" and e.state == "STOPPED" for e in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    stream.cancel()
    kinds = [(e.kind, e.pod_id, e.container_id, e.state, e.reason) for e in seen]
    assert ("container_started", "busy", "c", "", "") in kinds, kinds
    assert ("pod_state", "busy", "", "RUNNING", "") in kinds, kinds
    assert ("container_exited", "busy", "c", "", "Killed") in kinds, kinds
    assert ("pod_state", "busy", "", "STOPPED", "") in kinds, kinds
