"""Faults of containers and of the runtime, in local mode: each is injected while another pod
runs, and afterwards the init is healthy, the other pod still runs (and its logs are whole), and
the init's memory is recorded before and after (target/bench/faults.json, for the README's
table). Root only (the runtime needs it). runc: on this host it enforces the pids limit."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from init.services.pod.resources import DEFAULT_PIDS as PIDS_LIMIT
from oneproto import one_pb2
from tests.fixtures.fakeruntime import FakeRuntime
from tests.fixtures.pods import (
    CALL,
    HOST_PODS,
    Env,
    ctr,
    record,
    rss_kib,
    run_pod,
    slowest_health_during,
    wait_state,
    wait_until,
)
from tests.fixtures.pods import children as children_of

pytestmark = HOST_PODS

@dataclass
class Faulty:
    env: Env
    fake: FakeRuntime
    data: Path


@pytest.fixture
def faulty(tmp_path: Path, fake_pods: Env, fake_runtime: FakeRuntime) -> Iterator[Faulty]:
    """A local init on a fake runtime (wrapping runc) with a bystander pod running, which must
    run on, unharmed, to the end."""
    env = fake_pods
    run_pod(env, "bystander", ctr("c", env.image, "sh", "-c", "echo up; exec busybox sleep 3600"))
    yield Faulty(env, fake_runtime, tmp_path / "data")
    fake_runtime.behave()
    pod = env.stub.GetPod(one_pb2.GetPodRequest(id="bystander"), timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_RUNNING, pod
    out = b"".join(m.data for m in env.stub.Logs(
        one_pb2.LogsRequest(pod_id="bystander"), timeout=CALL))
    assert out == b"up\n"
    ran = list(env.stub.Exec(iter([one_pb2.ExecInput(start=one_pb2.ExecStart(
        pod_id="bystander", container_id="c", command=["true"]))]), timeout=CALL))
    assert [m.exit_code for m in ran] == [0]


def _container_pid(f: Faulty, pod: str, container: str) -> int:
    return int((f.data / "pods" / pod / "containers" / container / "pid").read_text())


def test_a_container_killed_with_sigkill(faulty: Faulty) -> None:
    env = faulty.env
    before = rss_kib(env.init.proc.pid)
    run_pod(env, "victim", ctr("a", env.image, "sh", "-c", "echo a; exec busybox sleep 3600"),
            ctr("b", env.image, "sh", "-c", "echo b; exec busybox sleep 3600"))
    os.kill(_container_pid(faulty, "victim", "a"), signal.SIGKILL)
    wait_until(lambda: env.stub.GetPod(one_pb2.GetPodRequest(id="victim"), timeout=CALL)
               .containers[0].state == one_pb2.CONTAINER_STATE_STOPPED, 30, "a to stop")
    pod = env.stub.GetPod(one_pb2.GetPodRequest(id="victim"), timeout=CALL)
    assert pod.containers[0].exit_code == 137
    assert pod.containers[1].state == one_pb2.CONTAINER_STATE_RUNNING  # its sibling runs on
    assert pod.state == one_pb2.POD_STATE_RUNNING
    out = b"".join(m.data for m in env.stub.Logs(one_pb2.LogsRequest(pod_id="victim"),
                                                 timeout=CALL))
    assert out == b"a\nb\n"
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="victim", force=True), timeout=CALL)
    record("container SIGKILLed", before, rss_kib(env.init.proc.pid))


def test_the_runtime_crashing(faulty: Faulty) -> None:
    env, fake = faulty.env, faulty.fake
    before = rss_kib(env.init.proc.pid)
    fake.cue("create", "crash")
    pod = env.stub.CreatePod(one_pb2.CreatePodRequest(id="crashy", containers=[
        ctr("c", env.image, "true")]), timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_FAILED, pod
    assert "fake-runtime killed by signal 11" in pod.error_message, pod
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="crashy"), timeout=CALL)
    fake.cue("start", "crash")
    env.stub.CreatePod(one_pb2.CreatePodRequest(id="crashy", containers=[
        ctr("c", env.image, "true")]), timeout=CALL)
    pod = env.stub.StartPod(one_pb2.StartPodRequest(id="crashy"), timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_FAILED and "signal 11" in pod.error_message, pod
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="crashy"), timeout=CALL)
    fake.behave()  # the same ids again: nothing of the failed attempts is left in the way
    pod = run_pod(env, "crashy", ctr("c", env.image, "busybox", "sleep", "3600"))
    assert pod.state == one_pb2.POD_STATE_RUNNING, pod
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="crashy", force=True), timeout=CALL)
    record("runtime crashing", before, rss_kib(env.init.proc.pid))


def test_the_runtime_missing(faulty: Faulty) -> None:
    env, fake = faulty.env, faulty.fake
    before = rss_kib(env.init.proc.pid)
    script = fake.path.read_bytes()
    fake.path.unlink()
    try:
        pod = env.stub.CreatePod(one_pb2.CreatePodRequest(id="nort", containers=[
            ctr("c", env.image, "true")]), timeout=CALL)
        assert pod.state == one_pb2.POD_STATE_FAILED, pod
        assert "cannot run the OCI runtime" in pod.error_message, pod
        with pytest.raises(grpc.RpcError) as info:
            list(env.stub.Exec(iter([one_pb2.ExecInput(start=one_pb2.ExecStart(
                pod_id="bystander", container_id="c", command=["true"]))]), timeout=CALL))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot run the OCI runtime" in info.value.details()
        env.stub.DeletePod(one_pb2.DeletePodRequest(id="nort"), timeout=CALL)
    finally:
        fake.path.write_bytes(script)
        fake.path.chmod(0o755)
    record("runtime missing", before, rss_kib(env.init.proc.pid))


def test_the_runtime_hanging(faulty: Faulty) -> None:
    env, fake = faulty.env, faulty.fake
    before = rss_kib(env.init.proc.pid)
    env.stub.CreatePod(one_pb2.CreatePodRequest(id="stuck", containers=[
        ctr("c", env.image, "busybox", "sleep", "3600")]), timeout=CALL)
    fake.cue("start", "hang")
    started = time.monotonic()
    # The init answers all along; the call ends when the runtime is killed (after a minute).
    slowest, pod = slowest_health_during(env, lambda: env.stub.StartPod(
        one_pb2.StartPodRequest(id="stuck"), timeout=240))
    took = time.monotonic() - started
    assert pod.state == one_pb2.POD_STATE_FAILED, pod
    assert "did not answer in 60 s: killed" in pod.error_message, pod
    # Killed after its 60 s, not left for ever; load only adds to the 60 s, so the upper bound
    # is generous (twice the timeout).
    assert 55 < took < 120, took
    # A loop waiting on the hung runtime would hold a Health call for the whole minute; a
    # loaded host delays one by a second or two at most. A tenth of the hang tells them apart.
    assert slowest < 6.0, slowest
    assert "sleep" not in children_of(env.init.proc.pid).values()  # the hung call is gone
    fake.behave()
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="stuck", force=True), timeout=CALL)
    record("runtime hanging", before, rss_kib(env.init.proc.pid),
           seconds_to_fail=round(took, 1), slowest_health_s=round(slowest, 3))


def _in_pid_namespace_of(pid: int) -> int:
    """How many processes share the pid namespace of `pid`."""
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.readlink(f"/proc/{entry}/ns/pid") == ns
            except OSError:
                continue
    return count


def test_a_container_forking_until_its_pids_limit(faulty: Faulty) -> None:
    env = faulty.env
    before = rss_kib(env.init.proc.pid)
    # Every process forks two more and sleeps: they pile up until fork fails.
    run_pod(env, "bomb", ctr("c", env.image, "sh", "-c",
                             "b() { b | b & busybox sleep 600; }; b"))
    init_pid = _container_pid(faulty, "bomb", "c")
    peak = 0

    def at_the_limit() -> bool:
        nonlocal peak
        peak = max(peak, _in_pid_namespace_of(init_pid))
        return b"can't fork" in (faulty.data / "pods/bomb/containers/c/stderr.log").read_bytes()

    wait_until(at_the_limit, 120, "the fork bomb to hit its pids limit")
    slowest, ran = slowest_health_during(env, lambda: list(env.stub.Exec(iter([
        one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="bystander", container_id="c",
                                                  command=["true"]))]), timeout=CALL)))
    assert [m.exit_code for m in ran] == [0]  # the runtime still starts processes elsewhere
    peak = max(peak, _in_pid_namespace_of(init_pid))
    assert peak <= PIDS_LIMIT, peak
    pod = env.stub.StopPod(one_pb2.StopPodRequest(id="bomb", timeout_seconds=1), timeout=CALL)
    assert pod.state == one_pb2.POD_STATE_STOPPED, pod
    env.stub.DeletePod(one_pb2.DeletePodRequest(id="bomb"), timeout=CALL)
    after = rss_kib(env.init.proc.pid)
    record("container forking to its pids limit", before, after, peak_processes=peak,
           slowest_health_s=round(slowest, 3))
    wait_state(env, "bystander", one_pb2.POD_STATE_RUNNING)
