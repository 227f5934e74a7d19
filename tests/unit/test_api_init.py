"""The API inside the init's life: the Shutdown call's grace reaches the pod service, the way down
is bounded, and local mode without its API is an error, not a silent process."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
from grpclib.client import Channel

from init import config
from init.app import ApiUnavailable, Init
from init.config import Config
from init.services.pod.model import RunningCounts
from init.system.reaper import Reaper
from oneproto import one_grpc, one_pb2


class RecordingPods:
    def __init__(self, hang: bool = False) -> None:
        self.stopped_with: list[float] = []
        self._hang = hang

    def running_counts(self) -> RunningCounts:
        return RunningCounts(1, 2)

    def close(self) -> None:
        self.closed = True

    def hurry(self, grace_seconds: float) -> None:
        self.hurried_to = grace_seconds

    async def stop_all(self, grace_seconds: float) -> None:
        self.stopped_with.append(grace_seconds)
        if self._hang:
            await asyncio.sleep(3600)


def _config(tmp_path: Path, listen: str) -> Config:
    return config.defaults("local", data_dir=tmp_path / "data", listen=listen,
                           shutdown_grace=7.0, hooks_dir=tmp_path / "no-hooks")


async def _serving(init: Init, sock: Path) -> asyncio.Task[None]:
    serving = asyncio.create_task(init.serve())
    for _ in range(200):  # the socket appears once the api phase is done
        if sock.exists():
            break
        await asyncio.sleep(0.05)
    return serving


async def _serve_and_shut_down(init: Init, sock: Path, timeout_seconds: int) -> None:
    serving = await _serving(init, sock)
    channel = Channel(path=str(sock))
    try:
        stub = one_grpc.OneServiceStub(channel)
        health = await stub.Health(one_pb2.Empty())
        assert (health.running_pods, health.running_containers) == (1, 2)
        await stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=timeout_seconds))
    finally:
        channel.close()
    await asyncio.wait_for(serving, 30)


@pytest.mark.parametrize(("timeout_seconds", "grace"), [(3, 3.0), (0, 7.0)])
def test_shutdown_call_stops_pods_with_its_grace_then_the_api(tmp_path: Path,
                                                              timeout_seconds: int,
                                                              grace: float) -> None:
    sock = tmp_path / "api.sock"
    pods = RecordingPods()
    init = Init(_config(tmp_path, f"unix:{sock}"), Reaper(), pods)
    asyncio.run(_serve_and_shut_down(init, sock, timeout_seconds))
    assert init.shutdown_reason == "api"
    assert init.shutdown_grace == grace  # what PID 1 hands to power_off
    assert pods.stopped_with == [grace]
    assert not sock.exists()


def test_a_hanging_pod_service_does_not_hold_the_way_down(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Init, "STOP_MARGIN", 0.2)
    sock = tmp_path / "api.sock"
    pods = RecordingPods(hang=True)
    init = Init(_config(tmp_path, f"unix:{sock}"), Reaper(), pods)
    asyncio.run(_serve_and_shut_down(init, sock, 1))  # bounded by 1 s + 0.2 s
    assert pods.stopped_with == [1.0]


def test_local_mode_without_its_api_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a socket")
    init = Init(_config(tmp_path, f"unix:{tmp_path / 'file'}"), Reaper())
    with pytest.raises(ApiUnavailable, match="not a socket"):
        asyncio.run(init.serve())


def test_the_collector_is_back_on_once_the_init_serves(tmp_path: Path) -> None:
    """The frozen entry point turns the cyclic collector off for the boot's imports (__main__);
    serving turns it on again, with what the boot built frozen out of its passes."""
    sock = tmp_path / "api.sock"
    gc.disable()
    try:
        init = Init(_config(tmp_path, f"unix:{sock}"), Reaper(), RecordingPods())

        async def serve_and_look() -> tuple[bool, int]:
            serving = await _serving(init, sock)
            seen = (gc.isenabled(), gc.get_freeze_count())
            init.request_shutdown("test")
            await asyncio.wait_for(serving, 30)
            return seen

        enabled, frozen = asyncio.run(serve_and_look())
    finally:
        gc.unfreeze()
        gc.enable()
    assert enabled
    assert frozen > 0
