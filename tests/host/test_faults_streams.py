"""Streams against slow, silent and vanishing clients, in local mode with a real runtime: the
init's memory stays flat whatever the client reads, and a client that goes away leaves nothing
running. Root only (the runtime needs it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import oci_runtime
from tests.fixtures.pods import CALL, Env, children, ctr, pod_env, rss_kib, run_pod, wait_until

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root")]

SILENT_SECONDS = 10.0
RSS_GROWTH_LIMIT_KIB = 20 << 10


@pytest.fixture
def env(tmp_path: Path, image_registry: Registry, busybox_image: Pushed) -> Iterator[Env]:
    with pod_env(tmp_path, oci_runtime("runc", tmp_path),
                 f"{image_registry.address}/{busybox_image.name}") as e:
        yield e


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
    print(f"init RSS: {before} KiB before, peak {peak} KiB while the client read nothing, "
          f"{rss_kib(pid)} KiB after")
