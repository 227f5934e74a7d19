"""CreatePod+StartPod → RUNNING for a cached image against `crun run` of the same bundle, in one
run on this host (crun wrapped for hybrid cgroups as in test_pods_local.py), and against the floor
of a pod: `crun create` + `crun start` of that bundle by hand. Prints the figures and writes them
to target/bench/pods.json.

Mounting cgroup2 (the wrapper does, and crun does inside every container) waits for an RCU grace
period unless another cgroup2 mount passed one just before (the kernel's rcu_sync on the cgroup
threadgroup lock): ~25 ms on an idle host. So every step is timed twice, all after the same
start: "quiet" after an idle spell, as a pod is created in the field, and "busy" right after an
untimed runtime call, as in a burst of pods (there, the init's own latency before its first
runtime call decides whether that call still finds the lock warm).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.paths import TARGET
from tests.fixtures.runtimes import crun_hybrid

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root")]
ROUNDS = 7
MODES = ("quiet", "busy")
QUIET = 0.2  # seconds of idle before a "quiet" step: several grace periods


def _run(argv: list[str], log: Path) -> None:
    # To a file, not a pipe: a created container keeps the runtime's stdio open.
    with log.open("w") as err:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err, timeout=60).returncode
    assert rc == 0, f"{argv} exited with {rc}: {log.read_text()}"


def _settle(mode: str, warm_up: list[str], log: Path) -> None:
    if mode == "quiet":
        time.sleep(QUIET)
    else:
        _run(warm_up, log)


def _timed(argv_list: list[list[str]], settle: Callable[[], None], log: Path) -> float:
    settle()
    t0 = time.perf_counter()
    for argv in argv_list:
        _run(argv, log)
    return time.perf_counter() - t0


def test_create_start_against_crun_run(tmp_path: Path, image_registry: Registry,
                                       busybox_image: Pushed) -> None:
    runtime = crun_hybrid(tmp_path)  # target/runtime/crun, or the cached build of it
    crun = [runtime, "--root", str(tmp_path / "crun-root")]
    log = tmp_path / "crun.log"
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [*SOURCE_INIT, "--runtime", runtime])
    image = f"{image_registry.address}/{busybox_image.name}"
    times: dict[str, dict[str, list[float]]] = {
        mode: {"pod": [], "crun_run": [], "crun_create_start": []} for mode in MODES}
    try:
        with init.client() as stub:
            # Read the pull to its end: a stream left unread is cancelled, and the first round
            # would then time a pull, not a pod of a cached image.
            *_, done = stub.PullImage(one_pb2.PullImageRequest(reference=image), timeout=120)
            assert done.status == "done", done
            cached = {i.digest for i in stub.ListImages(one_pb2.Empty(), timeout=60).images}
            assert done.image.digest in cached
            for i in range(ROUNDS):
                for mode in MODES:
                    settle = functools.partial(_settle, mode, [*crun, "list"], log)
                    _round(stub, image, f"{mode}{i}", crun, tmp_path, settle, times[mode])
    except grpc.RpcError as e:
        raise AssertionError(f"{e}\n{init.log()}") from e
    finally:
        init.stop()
    figures: dict[str, object] = {
        "rounds": ROUNDS, "loadavg_1min": os.getloadavg()[0],
        "baseline": "crun_run: `crun run` of the pod's own bundle, timed in the same rounds; "
                    "floor: `crun create` + `crun start` of it by hand"}
    for mode in MODES:
        ms = {k: round(statistics.median(v) * 1000, 2) for k, v in times[mode].items()}
        figures[mode] = {"median_ms": ms,
                         "pod_over_crun_run": round(ms["pod"] / ms["crun_run"], 2),
                         "floor_over_crun_run": round(ms["crun_create_start"] / ms["crun_run"], 2),
                         "pod_over_floor": round(ms["pod"] / ms["crun_create_start"], 2)}
        print(f"\n{mode}: CreatePod+StartPod → RUNNING: median {ms['pod']:.1f} ms; crun run of "
              f"the same bundle: {ms['crun_run']:.1f} ms (ratio {ms['pod'] / ms['crun_run']:.2f});"
              f" crun create + start by hand: {ms['crun_create_start']:.1f} ms (÷ crun run "
              f"{ms['crun_create_start'] / ms['crun_run']:.2f}); {ROUNDS} rounds")
        assert ms["pod"] < 20 * ms["crun_run"]
    out = TARGET / "bench" / "pods.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


def _round(stub: one_pb2_grpc.OneServiceStub, image: str, pod_id: str, crun: list[str],
           tmp_path: Path, settle: Callable[[], None], times: dict[str, list[float]]) -> None:
    log = tmp_path / "crun.log"
    spec = one_pb2.ContainerSpec(id="c", image=image, command=["busybox", "sleep", "60"])
    settle()
    t0 = time.perf_counter()
    stub.CreatePod(one_pb2.CreatePodRequest(id=pod_id, containers=[spec]), timeout=60)
    pod = stub.StartPod(one_pb2.StartPodRequest(id=pod_id), timeout=60)
    times["pod"].append(time.perf_counter() - t0)
    assert pod.state == one_pb2.POD_STATE_RUNNING, pod
    # The same bundle (config.json, the overlay rootfs), run by crun alone: the container exits
    # at once (`true`), so this is create + start + exit.
    bundle = tmp_path / "data" / "pods" / pod_id / "containers" / "c"
    doc = json.loads((bundle / "config.json").read_text())
    alone, hand = tmp_path / f"alone-{pod_id}", tmp_path / f"hand-{pod_id}"
    for where, args in ((alone, ["true"]), (hand, doc["process"]["args"])):
        doc["process"]["args"] = args
        where.mkdir()
        (where / "config.json").write_text(json.dumps(doc))
    times["crun_run"].append(_timed([[*crun, "run", "--bundle", str(alone), alone.name]],
                                    settle, log))
    # What a pod cannot go below: the runtime's two calls, from a shell's speed.
    times["crun_create_start"].append(_timed(
        [[*crun, "create", "--bundle", str(hand), "--pid-file", str(hand / "pid"), hand.name],
         [*crun, "start", hand.name]], settle, log))
    _run([*crun, "delete", "--force", hand.name], log)
    stub.DeletePod(one_pb2.DeletePodRequest(id=pod_id, force=True), timeout=60)
