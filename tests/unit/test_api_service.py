"""OneService as the init serves it (its own codec, on a unix socket) to grpclib's protobuf
client: results, statuses, and the error guard."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from grpclib import GRPCError, Status
from grpclib.client import Channel

from init.api.server import ApiServer
from init.net.netinfo import InterfaceState
from init.services.pod.model import RunningCounts
from init.version import VERSION
from oneproto import one_grpc, one_pb2


class FakePods:
    def running_counts(self) -> RunningCounts:
        return RunningCounts(2, 5)

    async def stop_all(self, grace_seconds: float) -> None:
        return None


async def _interfaces() -> list[InterfaceState]:
    return [InterfaceState(1, "lo", "00:00:00:00:00:00", True, "127.0.0.1", "255.0.0.0"),
            InterfaceState(2, "eth0", "52:54:00:12:34:56", False, "10.0.2.15",
                           "255.255.255.0", "10.0.2.2", ["10.0.2.3"], "fec0::1", "fe80::2",
                           ["fec0::3"])]


async def _broken_network() -> list[InterfaceState]:
    raise RuntimeError("netlink exploded")


def _run(body: Callable[[one_grpc.OneServiceStub], Awaitable[Any]], **service_args: Any) -> Any:
    args: dict[str, Any] = {"version": VERSION, "pods": None,
                            "request_shutdown": lambda reason, grace: None,
                            "default_grace": 10.0, "network": _interfaces}
    args.update(service_args)

    async def main() -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            server = await ApiServer.start(f"unix:{tmp}/api.sock", **args)
            channel = Channel(path=f"{tmp}/api.sock")
            try:
                return await body(one_grpc.OneServiceStub(channel))
            finally:
                channel.close()
                await server.stop()

    return asyncio.run(main())


def test_health_reports_version_and_the_pod_service_counts() -> None:
    async def body(stub: one_grpc.OneServiceStub) -> Any:
        return await stub.Health(one_pb2.Empty())

    reply = _run(body, pods=FakePods())
    assert (reply.healthy, reply.version, reply.running_pods, reply.running_containers) == \
        (True, VERSION, 2, 5)
    assert _run(body).running_pods == 0  # no pod service: nothing can run


def test_network_info_carries_every_field() -> None:
    async def body(stub: one_grpc.OneServiceStub) -> Any:
        return await stub.GetNetworkInfo(one_pb2.Empty())

    lo, eth0 = _run(body).interfaces
    assert (lo.name, lo.ipv4_address, lo.ipv4_netmask) == ("lo", "127.0.0.1", "255.0.0.0")
    assert (eth0.mac_address, eth0.ipv4_gateway, list(eth0.ipv4_dns), eth0.ipv6_address,
            eth0.ipv6_gateway, list(eth0.ipv6_dns)) == \
        ("52:54:00:12:34:56", "10.0.2.2", ["10.0.2.3"], "fec0::1", "fe80::2", ["fec0::3"])


def test_a_failing_handler_is_internal_for_that_call_only(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    async def body(stub: one_grpc.OneServiceStub) -> Any:
        with pytest.raises(GRPCError) as err:
            await stub.GetNetworkInfo(one_pb2.Empty())
        health = await stub.Health(one_pb2.Empty())  # same channel, same server: unharmed
        return err.value, health

    with caplog.at_level(logging.ERROR, logger="mvirt-one"):
        error, health = _run(body, network=_broken_network)
    assert error.status == Status.INTERNAL
    assert "RuntimeError: netlink exploded" in error.message
    assert health.healthy
    logged = [r for r in caplog.records if "GetNetworkInfo failed" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # with its traceback


@pytest.mark.parametrize(("timeout", "expected"), [(3, 3.0), (0, 10.0)])
def test_shutdown_answers_then_requests_the_way_down(timeout: int, expected: float) -> None:
    calls: list[tuple[str, float]] = []

    async def body(stub: one_grpc.OneServiceStub) -> Any:
        reply = await stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=timeout))
        return reply

    reply = _run(body, request_shutdown=lambda reason, grace: calls.append((reason, grace)))
    assert reply == one_pb2.Empty()
    assert calls == [("api", expected)]


POD_RPCS = [("CreatePod", one_pb2.CreatePodRequest(id="p")),
            ("StartPod", one_pb2.StartPodRequest(id="p")),
            ("StopPod", one_pb2.StopPodRequest(id="p")),
            ("DeletePod", one_pb2.DeletePodRequest(id="p")),
            ("GetPod", one_pb2.GetPodRequest(id="p")),
            ("ListPods", one_pb2.Empty())]


@pytest.mark.parametrize(("method", "request_msg"), POD_RPCS, ids=[m for m, _ in POD_RPCS])
def test_pod_rpcs_without_a_pod_service_are_unavailable(method: str, request_msg: Any) -> None:
    async def body(stub: one_grpc.OneServiceStub) -> Any:
        with pytest.raises(GRPCError) as err:
            await getattr(stub, method)(request_msg)
        return err.value

    error = _run(body)  # a stand-in supervisor, not the pod service
    assert error.status == Status.UNAVAILABLE
    assert "pod service" in error.message


def test_streaming_pod_rpcs_are_unavailable_too() -> None:
    async def body(stub: one_grpc.OneServiceStub) -> Any:
        errors = []
        with pytest.raises(GRPCError) as err:
            async with stub.Logs.open() as logs:
                await logs.send_message(one_pb2.LogsRequest(pod_id="p"), end=True)
                await logs.recv_message()
        errors.append(err.value)
        # The status may already be there when the client sends: either call may raise it.
        with pytest.raises(GRPCError) as err:
            async with stub.Exec.open() as exec_:
                await exec_.send_message(one_pb2.ExecInput(stdin=b"x"))
                await exec_.recv_message()
        errors.append(err.value)
        return errors

    for error in _run(body):
        assert error.status == Status.UNAVAILABLE
        assert "pod service" in error.message
