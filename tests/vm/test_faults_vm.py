"""Faults inside the VM, in one boot (TCG, 128 MiB, the shipped runtime), where they differ from
local mode: 50 clients x 20 calls at once over vsock, a container that allocates until the VM's
memory is gone (the OOM killer must take it, never PID 1), a fork bomb in 128 MiB, undecodable
protobuf through vsock, and what GetNetworkInfo reports under qemu's user network. A bystander
pod runs throughout and must be unharmed; the init's RSS is read from its log before and after
each fault and recorded in target/bench/faults.json.

User networking (not restricted): the guest's SLAAC address comes from slirp's RA. The guest
contacts nothing but qemu's own services and the registry behind the guestfwd.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from onectl.machine import Machine
from onectl.relay import HybridVsockRelay
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.proxy import Proxy
from tests.fixtures.pods import record
from tests.fixtures.rawh2 import frame, raw_call
from tests.fixtures.vm import GUEST_REGISTRY, Artifacts, api_stub, boot_machine, registry_config

pytestmark = pytest.mark.vm

CALL = 120.0
_probes = itertools.count()



def _ctr(cid: str, image: str, script: str) -> one_pb2.ContainerSpec:
    return one_pb2.ContainerSpec(id=cid, image=image, command=["sh", "-c", script])


def _run(stub: one_pb2_grpc.OneServiceStub, pod_id: str, image: str, script: str) -> None:
    stub.CreatePod(one_pb2.CreatePodRequest(id=pod_id, containers=[_ctr("c", image, script)]),
                   timeout=CALL)
    pod = stub.StartPod(one_pb2.StartPodRequest(id=pod_id), timeout=CALL)
    assert pod.state in (one_pb2.POD_STATE_RUNNING, one_pb2.POD_STATE_STOPPED), pod


def _init_rss_kib(machine: Machine, stub: one_pb2_grpc.OneServiceStub, image: str) -> int:
    """The init's RSS as it logs it when a pod starts: a tiny probe pod, then gone."""
    probe = f"probe{next(_probes)}"
    _run(stub, probe, image, "true")
    stub.DeletePod(one_pb2.DeletePodRequest(id=probe, force=True), timeout=CALL)
    assert machine.vm is not None
    found = re.findall(rf"pod {probe} \w+; rss ([\d.]+) MiB", machine.vm.console())
    assert found, machine.vm.tail()
    return int(float(found[-1]) * 1024)


def _wait(what: str, timeout: float, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}"
        time.sleep(0.5)


def _oom_kills(machine: Machine) -> list[str]:
    """The names of the processes the kernel's OOM killer took so far."""
    assert machine.vm is not None
    # The VM's own ("Out of memory") or, bounded by the pods' cgroup, the cgroup's.
    return re.findall(r"[Oo]ut of memory: Killed process \d+ \((\S+)\)", machine.vm.console())


def test_faults_in_the_vm(artifacts: Artifacts, tmp_path: Path, image_proxy: Proxy,
                          busybox_image: Pushed, machines: list[Machine]) -> None:
    config = registry_config(artifacts, image_proxy.address, net="user")
    machine = boot_machine(config, tmp_path)
    machines.append(machine)
    assert machine.vm is not None
    image = f"{GUEST_REGISTRY}/{busybox_image.name}"
    with api_stub(machine) as stub:
        # GetNetworkInfo: the kernel's SLAAC address (site-local fec0::/64), no sit0.
        def eth0_v6() -> str:
            info = stub.GetNetworkInfo(one_pb2.Empty(), timeout=CALL)
            names = [i.name for i in info.interfaces]
            assert "sit0" not in names and "eth0" in names, names
            return next(i.ipv6_address for i in info.interfaces if i.name == "eth0")

        _wait("eth0's SLAAC address", 60, lambda: eth0_v6().startswith("fec0::"))

        _run(stub, "bystander", image, "echo up; exec busybox sleep 3600")

        # 50 clients x 20 calls at once, each client its own vsock connection.
        before = _init_rss_kib(machine, stub, image)

        def client(_: int) -> int:
            with api_stub(machine) as own:
                return sum(own.Health(one_pb2.Empty(), timeout=CALL).healthy
                           for _ in range(20))

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(client, range(50)))
        took = time.monotonic() - started
        assert results == [20] * 50
        record("50 clients x 20 calls at once over vsock (VM)", before,
               _init_rss_kib(machine, stub, image), seconds=round(took, 1))

        # Undecodable protobuf through vsock.
        before = _init_rss_kib(machine, stub, image)
        with HybridVsockRelay(machine.vsock_socket, 1024, connect_timeout=30) as relay:
            headers = raw_call(str(relay.socket_path), "GetPod",
                               frame(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
                               timeout=CALL)
            assert headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
            headers = raw_call(str(relay.socket_path), "Health",
                               frame(b"\x0a", length=(4 << 30) - 1), timeout=CALL)
            assert headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        record("undecodable protobuf and a 4 GiB announced message over vsock (VM)", before,
               _init_rss_kib(machine, stub, image))

        # A container that allocates until the VM's memory is gone: eight shells, each
        # holding a 24 MB string, every one of them smaller than the init.
        before = _init_rss_kib(machine, stub, image)
        hog = ("for i in 1 2 3 4 5 6 7 8; do "
               "sh -c 'x=$(busybox head -c 24000000 /dev/zero | busybox tr \"\\0\" a); "
               "busybox sleep 3600' & done; wait")
        _run(stub, "hog", image, hog)
        _wait("the OOM killer", 300, lambda: _oom_kills(machine))
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy
        stub.DeletePod(one_pb2.DeletePodRequest(id="hog", force=True), timeout=CALL)
        killed = _oom_kills(machine)
        assert killed and "init" not in killed and "mvirt-one" not in killed, killed
        record("container allocating all the VM's memory (VM, 128 MiB)", before,
               _init_rss_kib(machine, stub, image), oom_killed=sorted(set(killed)))

        # A fork bomb is stopped by whichever comes first: the OOM killer (taking its
        # processes, never the init) or its pids limit (its forks fail: "can't fork" in its
        # log). Which one depends on how much memory the VM has left.
        before = _init_rss_kib(machine, stub, image)
        kills = len(_oom_kills(machine))
        _run(stub, "bomb", image, "b() { b | b & busybox sleep 3600; }; b")

        def contained() -> bool:
            log = b"".join(m.data for m in stub.Logs(one_pb2.LogsRequest(pod_id="bomb"),
                                                     timeout=CALL))
            return len(_oom_kills(machine)) > kills or b"can't fork" in log

        _wait("the fork bomb to meet the OOM killer or its pids limit", 300, contained)
        slowest = 0.0
        for _ in range(5):
            t = time.monotonic()
            assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy
            slowest = max(slowest, time.monotonic() - t)
        stopped = stub.StopPod(one_pb2.StopPodRequest(id="bomb", timeout_seconds=1),
                               timeout=CALL)
        assert stopped.state == one_pb2.POD_STATE_STOPPED, stopped
        stub.DeletePod(one_pb2.DeletePodRequest(id="bomb"), timeout=CALL)
        bomb_killed = _oom_kills(machine)[kills:]
        assert "init" not in bomb_killed and "mvirt-one" not in bomb_killed, bomb_killed
        record("fork bomb (VM, 128 MiB)", before, _init_rss_kib(machine, stub, image),
               slowest_health_s=round(slowest, 2), oom_kills=len(bomb_killed))

        # The bystander ran through all of it.
        pod = stub.GetPod(one_pb2.GetPodRequest(id="bystander"), timeout=CALL)
        assert pod.state == one_pb2.POD_STATE_RUNNING, pod
        logs = b"".join(m.data for m in stub.Logs(one_pb2.LogsRequest(pod_id="bystander"),
                                                  timeout=CALL))
        assert logs == b"up\n"
    assert machine.stop(timeout=180) == 0
    console = machine.vm.console()
    assert "Kernel panic" not in console and "Traceback" not in console, machine.vm.tail()
    assert "error: oom_score_adj" not in console  # PID 1 protected itself
