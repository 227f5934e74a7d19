"""Streams against slow, silent and vanishing clients, in local mode with a real runtime: the
init's memory stays flat whatever the client reads, and a client that goes away leaves nothing
running. Root only (the runtime needs it)."""

from __future__ import annotations

import os
import time

import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.pods import (
    CALL,
    HOST_PODS,
    Env,
    children,
    ctr,
    record,
    rss_kib,
    run_pod,
    wait_until,
)

pytestmark = HOST_PODS

SILENT_SECONDS = 10.0
RSS_GROWTH_LIMIT_KIB = 20 << 10


@pytest.fixture
def env(runc_pods: Env) -> Env:
    return runc_pods


def _flat_while_silent(pid: int, before: int) -> int:
    """Watch the init's RSS for SILENT_SECONDS; fail as soon as it grows past the limit (so a
    regression does not eat the machine). Returns the peak."""
    peak = before
    deadline = time.monotonic() + SILENT_SECONDS
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(pid))
        assert peak - before < RSS_GROWTH_LIMIT_KIB, \
            f"init RSS grew from {before} to {peak} KiB for a client that reads nothing"
        time.sleep(0.2)
    return peak


def test_exec_output_waits_for_a_client_that_reads_nothing(env: Env) -> None:
    run_pod(env, "box", ctr("main", env.image, "sh", "-c", "exec busybox sleep 600"))
    pid = env.init.proc.pid
    start = one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="box", container_id="main",
                                                      command=["cat", "/dev/zero"]))
    before = rss_kib(pid)
    call = env.stub.Exec(iter([start]), timeout=CALL)  # never read
    wait_until(lambda: "cat" in children(pid).values(), 30, "the exec'd cat to start")
    peak = _flat_while_silent(pid, before)
    assert "cat" in children(pid).values()  # still running: blocked on its full pipe
    call.cancel()
    wait_until(lambda: "cat" not in children(pid).values(), 30,
               "the exec'd process to go with its client")
    assert env.stub.Health(one_pb2.Empty(), timeout=CALL).healthy
    record("exec client reading nothing (cat /dev/zero, 10 s)", before, rss_kib(pid),
           peak_kib=peak)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


ROUNDS = 20


def test_clients_that_disconnect_mid_stream(env: Env, busybox_v2s2_image: Pushed) -> None:
    """Logs -f, Exec and PullImage clients that go away in the middle, again and again: nothing
    stays behind in the init (tasks, fds, exec'd processes, memory), what was written is all in
    the logs, and an interrupted pull completes for the next client."""
    script = "i=0; while :; do echo line-$i; i=$((i+1)); busybox usleep 2000; done"
    run_pod(env, "talker", ctr("c", env.image, "sh", "-c", script))
    pid = env.init.proc.pid
    # Warm up the paths once (first use imports modules), then measure.
    warm = env.stub.Logs(one_pb2.LogsRequest(pod_id="talker", follow=True), timeout=CALL)
    next(warm)
    warm.cancel()
    before, fds = rss_kib(pid), _open_fds(pid)
    for _ in range(ROUNDS):
        follow = env.stub.Logs(one_pb2.LogsRequest(pod_id="talker", follow=True), timeout=CALL)
        for got, _m in enumerate(follow):
            if got == 3:
                break
        follow.cancel()
        start = one_pb2.ExecInput(start=one_pb2.ExecStart(
            pod_id="talker", container_id="c", command=["sh", "-c", "yes | head -c 100000000"]))
        call = env.stub.Exec(iter([start]), timeout=CALL)
        next(call)  # output flows
        call.cancel()
    wait_until(lambda: not {"yes", "head"} & set(children(pid).values()), 30,
               "the exec'd processes to go with their clients")
    wait_until(lambda: _open_fds(pid) <= fds, 30, f"the init's fds back to {fds}")
    # A pull whose client leaves at its first progress message finishes anyway.
    other = f"{env.image.split('/')[0]}/{busybox_v2s2_image.name}"
    progress = env.stub.PullImage(one_pb2.PullImageRequest(reference=other), timeout=CALL)
    next(progress)
    progress.cancel()
    wait_until(lambda: any(other in im.references for im in env.stub.ListImages(
        one_pb2.Empty(), timeout=CALL).images), 60, "the abandoned pull to complete")
    after = rss_kib(pid)
    # Nothing lost: the log holds every line, in order, without a gap.
    out = b"".join(m.data for m in env.stub.Logs(one_pb2.LogsRequest(pod_id="talker"),
                                                 timeout=CALL)).decode()
    lines = out.splitlines()
    assert lines == [f"line-{i}" for i in range(len(lines))], "lines missing from the log"
    assert after - before < 20 << 10, (before, after)
    record("clients disconnecting mid-stream (Logs -f, Exec, PullImage)", before, after,
           rounds=ROUNDS)
