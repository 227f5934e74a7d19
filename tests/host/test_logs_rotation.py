"""Logs that cannot fill the disk (local mode, runc): `yes` and a counter write for a minute into
logs rotated at 256 KiB x 3; what is kept stays within that, and `Logs --tail` ends with the last
lines the counter wrote, consecutive."""

from __future__ import annotations

import time
from pathlib import Path

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.pods import CALL, HOST_PODS, ctr, pod_env, run_pod, wait_state
from tests.fixtures.runtimes import runc

pytestmark = HOST_PODS

SIZE, COUNT = 256 << 10, 3
WRITING = 60.0  # seconds: what the issue asks of `yes`


def test_a_minute_of_yes_stays_within_size_times_count(tmp_path: Path, image_registry: Registry,
                                                      busybox_image: Pushed) -> None:
    image = f"{image_registry.address}/{busybox_image.name}"
    argv = [runc(), "--log-max-size", str(SIZE), "--log-max-files", str(COUNT)]
    with pod_env(tmp_path, argv[0], image, extra=argv[1:]) as env:
        run_pod(env, "chatty", ctr("yes", image, "busybox", "yes"),
                ctr("count", image, "busybox", "seq", "1", "1000000000"))
        time.sleep(WRITING)  # the minute of writing is the test's subject, not a wait
        env.stub.StopPod(one_pb2.StopPodRequest(id="chatty", timeout_seconds=1), timeout=CALL)
        wait_state(env, "chatty", one_pb2.POD_STATE_STOPPED)
        where = env.init.data_dir / "pods" / "chatty" / "containers"
        for name in ("yes", "count"):
            kept = sorted((where / name).glob("stdout.log*"))
            assert 1 < len(kept) <= COUNT, kept  # rotated, and no more files than asked
            assert sum(p.stat().st_size for p in kept) <= SIZE * COUNT
        tail = b"".join(m.data for m in env.stub.Logs(one_pb2.LogsRequest(
            pod_id="chatty", container_id="count", tail_lines=3), timeout=CALL))
        lines = tail.split(b"\n")
        # seq was killed mid-write: the log may end inside a number, which is then the start of
        # the one after the last whole line.
        partial = lines.pop()
        numbers = [int(n) for n in lines]
        assert len(numbers) == 3 - bool(partial), tail
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), tail
        assert str(numbers[-1] + 1).encode().startswith(partial), tail
        assert numbers[-1] > 50_000, numbers  # it wrote through many rotations
        stats = env.stub.Stats(one_pb2.StatsRequest(pod_id="chatty"), timeout=CALL)
        assert all(c.log_bytes <= SIZE * COUNT for c in stats.pods[0].containers)
