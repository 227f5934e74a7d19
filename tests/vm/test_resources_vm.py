"""Resources in one 128 MiB VM (TCG, the shipped crun), beside a steady neighbour whose shell
forks every second:
- a container with a 32 MiB limit that allocates without end stops with reason OOMKilled (its
  cgroup's oom_kill), told as an event, within seconds; Health and Exec answer meanwhile;
- with no limits given at all, a memory eater and a fork bomb meet the pods' bounds and the
  container defaults: the neighbour keeps ticking, Exec and CreatePod of another pod work;
- `cpu: 250m` on a busy loop shows ~25 % of a CPU in Stats (wide bounds: TCG) while the same
  loop without a limit shows much more;
- UpdateContainer changes a running container's memory.max, as the container sees it;
- a container that fills its writable layer meets ENOSPC on the layers' own tmpfs, while the
  init's files and the neighbour's log go on.
Figures go to target/bench/resources.json (OOM detection latency, the CPU shares measured).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import grpc
import pytest

from onectl.machine import Machine
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.paths import TARGET
from tests.fixtures.vm import GUEST_REGISTRY, Artifacts, api_stub, boot_machine, registry_config

pytestmark = pytest.mark.vm

CALL = 300.0



def _wait(what: str, timeout: float, check: Callable[[], object]) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out after {timeout:.0f} s: {what}"
        time.sleep(0.5)
    return time.monotonic() - started


class Guest:
    def __init__(self, stub: one_pb2_grpc.OneServiceStub, image: str) -> None:
        self.stub, self.image = stub, image

    def run(self, pod_id: str, script: str, resources: one_pb2.Resources | None = None) -> None:
        spec = one_pb2.ContainerSpec(id="c", image=self.image, command=["sh", "-c", script])
        if resources is not None:
            spec.resources.CopyFrom(resources)
        self.stub.CreatePod(one_pb2.CreatePodRequest(id=pod_id, containers=[spec]),
                            timeout=CALL)
        self.stub.StartPod(one_pb2.StartPodRequest(id=pod_id), timeout=CALL)

    def container(self, pod_id: str) -> one_pb2.Container:
        got: one_pb2.Container = self.stub.GetPod(one_pb2.GetPodRequest(id=pod_id),
                                                  timeout=CALL).containers[0]
        return got

    def ticks(self) -> int:
        return b"".join(m.data for m in self.stub.Logs(
            one_pb2.LogsRequest(pod_id="steady"), timeout=CALL)).count(b"tick")

    def exec_ok(self, pod_id: str) -> bool:
        out = list(self.stub.Exec(iter([one_pb2.ExecInput(start=one_pb2.ExecStart(
            pod_id=pod_id, container_id="c", command=["echo", "in"]))]), timeout=CALL))
        return any(m.stdout == b"in\n" for m in out) and out[-1].exit_code == 0

    def cpu_usec(self, pod_id: str) -> tuple[int, int]:
        got = self.stub.Stats(one_pb2.StatsRequest(pod_id=pod_id), timeout=CALL)
        return got.time_unix_ms, got.pods[0].containers[0].cpu_usage_usec

    def delete(self, pod_id: str) -> None:
        self.stub.DeletePod(one_pb2.DeletePodRequest(id=pod_id, force=True), timeout=CALL)


def _share(guest: Guest, pod_id: str, seconds: float) -> float:
    """The pod's CPU over `seconds`, as a share of one CPU (Stats twice)."""
    t0, u0 = guest.cpu_usec(pod_id)
    time.sleep(seconds)  # the measuring window itself, not a wait for an event
    t1, u1 = guest.cpu_usec(pod_id)
    return (u1 - u0) / ((t1 - t0) * 1000)


STEADY = "while :; do echo tick; busybox sleep 1; done"
EAT = "x=$(busybox head -c 400000000 /dev/zero | busybox tr '\\0' a); echo survived"
BOMB = "b() { b | b & busybox sleep 3600; }; b"
BUSY = "while :; do :; done"


def test_resources_in_the_vm(artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy,
                             busybox_image: Pushed, machines: list[Machine]) -> None:
    config = registry_config(artifacts, image_proxy.address)
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    assert machine.vm is not None
    bounds = re.search(r"cgroups: pods may use (\d+) MiB and (\d+) threads",
                       machine.vm.console())
    assert bounds, machine.vm.console()
    figures: dict[str, object] = {"pods_memory_mib": int(bounds[1]),
                                  "pods_threads": int(bounds[2])}
    with api_stub(machine) as stub:
        guest = Guest(stub, f"{GUEST_REGISTRY}/{busybox_image.name}")
        events: list[one_pb2.Event] = []
        stream = stub.Events(one_pb2.EventsRequest(), timeout=None)
        stream.initial_metadata()

        def follow() -> None:
            with suppress(grpc.RpcError):  # cancelled at the end
                for event in stream:
                    events.append(event)

        threading.Thread(target=follow, daemon=True).start()
        guest.run("steady", STEADY)
        _wait("the neighbour's first ticks", 120, lambda: guest.ticks() >= 2)

        # 1. A 32 MiB limit, allocation without end: OOMKilled within seconds.
        started = time.monotonic()
        guest.run("eater", EAT, one_pb2.Resources(memory_limit_bytes=32 << 20))
        _wait("the eater to stop", 120,
              lambda: guest.container("eater").state == one_pb2.CONTAINER_STATE_STOPPED)
        figures["oom_detected_s"] = round(time.monotonic() - started, 1)
        eater = guest.container("eater")
        assert (eater.reason, eater.exit_code, eater.signal) == ("OOMKilled", 137, 9), eater
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy and guest.exec_ok("steady")
        _wait("the OOM event", 30, lambda: any(
            e.kind == "container_oom_killed" and e.pod_id == "eater" for e in events))
        guest.delete("eater")

        # 2. No limits at all: a memory eater, then a fork bomb; the neighbour goes on.
        before = guest.ticks()
        guest.run("hog", EAT)
        _wait("the unlimited eater to stop", 300,
              lambda: guest.container("hog").state == one_pb2.CONTAINER_STATE_STOPPED)
        hog = guest.container("hog")
        assert hog.reason == "OOMKilled", hog
        guest.delete("hog")
        guest.run("bomb", BOMB)
        _wait("the bomb to reach its pids limit", 300, lambda: b"can't fork" in b"".join(
            m.data for m in stub.Logs(one_pb2.LogsRequest(pod_id="bomb"), timeout=CALL)))
        assert guest.exec_ok("steady")
        guest.run("other", "echo other; exec busybox sleep 600")
        assert guest.exec_ok("other")
        guest.delete("bomb")
        guest.delete("other")
        assert guest.container("steady").state == one_pb2.CONTAINER_STATE_RUNNING
        _wait("the neighbour to tick on", 60, lambda: guest.ticks() >= before + 3)

        # 3. cpu: 250m against the same loop unlimited.
        guest.run("capped", BUSY, one_pb2.Resources(cpu_limit_millis=250))
        guest.run("free", BUSY)
        capped, free = _share(guest, "capped", 10), _share(guest, "free", 10)
        figures.update(cpu_capped_share=round(capped, 2), cpu_free_share=round(free, 2))
        assert 0.10 <= capped <= 0.45, figures
        assert free > capped + 0.15, figures

        # 4. UpdateContainer: the container sees its new memory.max.
        stub.UpdateContainer(one_pb2.UpdateContainerRequest(
            pod_id="capped", container_id="c",
            resources=one_pb2.Resources(memory_limit_bytes=48 << 20, cpu_limit_millis=500)),
            timeout=CALL)
        out = b"".join(m.stdout for m in stub.Exec(iter([one_pb2.ExecInput(
            start=one_pb2.ExecStart(pod_id="capped", container_id="c",
                                    command=["cat", "/sys/fs/cgroup/memory.max",
                                             "/sys/fs/cgroup/cpu.max"]))]), timeout=CALL))
        assert out.split() == [str(48 << 20).encode(), b"50000", b"100000"], out
        # 5. A container fills its writable layer: it meets ENOSPC on the layers' own tmpfs,
        # while the init's files (a new pod) and the neighbour's log go on.
        assert re.search(r"containers' writable layers on a tmpfs of \d+ MiB",
                         machine.vm.console()), machine.vm.tail()
        guest.delete("capped")
        guest.delete("free")
        guest.run("filler", "busybox dd if=/dev/zero of=/fill bs=1M; echo full")
        _wait("the filler to meet ENOSPC", 300, lambda: b"full" in b"".join(
            m.data for m in stub.Logs(one_pb2.LogsRequest(pod_id="filler"), timeout=CALL)))
        before = guest.ticks()
        guest.run("after", "echo still room; exec busybox sleep 600")
        assert guest.exec_ok("after")
        _wait("the neighbour to tick on", 60, lambda: guest.ticks() >= before + 2)
        stream.cancel()
    assert machine.stop(timeout=180) == 0
    console = machine.vm.console()
    assert "Kernel panic" not in console and "Traceback" not in console, machine.vm.tail()
    killed = re.findall(r"Killed process \d+ \((\S+)\)", console)
    assert "init" not in killed and "mvirt-one" not in killed and "crun" not in killed, killed
    report = TARGET / "bench" / "resources.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"relative_to": "a 128 MiB VM under TCG; CPU shares are of one "
                               "CPU over 10 s", **figures}, indent=1) + "\n")
