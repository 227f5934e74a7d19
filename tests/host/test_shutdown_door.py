"""The way down closes the door (local mode, runc): after a Shutdown, CreatePod, StartPod and Exec
answer UNAVAILABLE (before, a pod made then outlived the init on the host); a later Shutdown with
a shorter grace wins over a long one; a grace of years is capped."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2
from tests.fixtures.images.fixtures import Pushed
from tests.fixtures.images.registry import Registry
from tests.fixtures.local import SOURCE_INIT, LocalInit
from tests.fixtures.pods import CALL, HOST_PODS, ctr, wait_until
from tests.fixtures.runtimes import runc

pytestmark = HOST_PODS


def _unavailable(call: object) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert "shutting down" in str(info.value.details())


def test_shutdown_refuses_new_work_and_a_shorter_grace_wins(tmp_path: Path,
                                                            image_registry: Registry,
                                                            busybox_image: Pushed) -> None:
    image = f"{image_registry.address}/{busybox_image.name}"
    init = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}",
                     [*SOURCE_INIT, "--runtime", runc()])
    try:
        with init.client() as stub:
            # A container that ignores SIGTERM: only the grace's end (SIGKILL) stops it.
            stub.CreatePod(one_pb2.CreatePodRequest(id="stubborn", containers=[
                ctr("c", image, "sh", "-c", "trap 'echo TERM ignored' TERM; echo up; "
                    "while :; do busybox sleep 1; done")]), timeout=CALL)
            stub.StartPod(one_pb2.StartPodRequest(id="stubborn"), timeout=CALL)
            stub.CreatePod(one_pb2.CreatePodRequest(id="waiting", containers=[
                ctr("c", image, "true")]), timeout=CALL)

            def logged(text: bytes) -> bool:
                return text in b"".join(m.data for m in stub.Logs(
                    one_pb2.LogsRequest(pod_id="stubborn"), timeout=CALL))

            wait_until(lambda: logged(b"up\n"), 30, "the container's trap")
            # A grace of about 126 years: capped, and the init keeps serving meanwhile.
            stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=4_000_000_000), timeout=CALL)
            init.wait_for(r"shutdown grace 4000000000 s capped at 600 s")
            wait_until(lambda: logged(b"TERM ignored"), 30, "SIGTERM to reach the container")

            _unavailable(lambda: stub.CreatePod(one_pb2.CreatePodRequest(
                id="late", containers=[ctr("c", image, "true")]), timeout=CALL))
            _unavailable(lambda: stub.StartPod(one_pb2.StartPodRequest(id="waiting"),
                                               timeout=CALL))
            _unavailable(lambda: list(stub.Exec(iter([one_pb2.ExecInput(
                start=one_pb2.ExecStart(pod_id="stubborn", container_id="c",
                                        command=["true"]))]), timeout=CALL)))
            assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy

            # A second Shutdown with 1 s: the container is killed a second later, not in 600.
            asked = time.monotonic()
            stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=1), timeout=CALL)
        rc = init.proc.wait(timeout=60)
        took = time.monotonic() - asked
        assert rc == 0, init.log()
        assert took < 30, f"the init stopped {took:.1f} s after the 1 s Shutdown"
        assert "grace 1 s instead of 600 s" in init.log()
        assert "Traceback" not in init.log()
    finally:
        if init.proc.poll() is None:
            init.proc.kill()
            init.proc.wait()
