"""The init's API in local mode, called by a plain grpcio client generated from proto/one.proto.

grpcio here and grpclib in the init are independent HTTP/2 and gRPC implementations, so these calls
prove wire compatibility, not just that our code agrees with itself. Everything is on loopback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import h2.config
import h2.connection
import pytest

from init.version import VERSION
from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.local import FROZEN, SOURCE_INIT, LocalInit, serving
from tests.fixtures.paths import TARGET

BENCH = TARGET / "bench"
CALL_TIMEOUT = 10.0


@pytest.fixture
def api_sock(tmp_path: Path) -> Iterator[Path]:
    # Nothing a client does may show up as an error of the init (serving checks its log).
    with serving(tmp_path) as init:
        yield Path(init.listen.removeprefix("unix:"))


def _stub(target: str) -> tuple[grpc.Channel, one_pb2_grpc.OneServiceStub]:
    channel = grpc.insecure_channel(target)
    return channel, one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]


def test_health_over_unix(api_sock: Path) -> None:
    channel, stub = _stub(f"unix:{api_sock}")
    with channel:
        reply = stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert reply.healthy
    assert reply.version == VERSION
    assert (reply.running_pods, reply.running_containers) == (0, 0)


def test_network_info_lists_every_live_interface(api_sock: Path) -> None:
    channel, stub = _stub(f"unix:{api_sock}")
    with channel:
        info = stub.GetNetworkInfo(one_pb2.Empty(), timeout=CALL_TIMEOUT)
    by_name = {i.name: i for i in info.interfaces}
    assert set(by_name) == {name for _, name in socket.if_nameindex()}
    lo = by_name["lo"]
    assert (lo.ipv4_address, lo.ipv4_netmask) == ("127.0.0.1", "255.0.0.0")
    assert lo.mac_address == "00:00:00:00:00:00"
    assert lo.delegated_prefix == ""


@pytest.mark.parametrize("method", ["ListPods", "CreatePod", "Logs", "Exec"])
def test_pod_rpcs_answer_without_any_pod(api_sock: Path, method: str) -> None:
    """The pod service is there (tests/host/test_pods_local.py runs pods): empty, it answers
    with the status API.md gives, never UNIMPLEMENTED."""
    channel, stub = _stub(f"unix:{api_sock}")
    with channel:
        if method == "ListPods":
            assert list(stub.ListPods(one_pb2.Empty(), timeout=CALL_TIMEOUT).pods) == []
            return
        with pytest.raises(grpc.RpcError) as err:
            if method == "CreatePod":
                stub.CreatePod(one_pb2.CreatePodRequest(id="web"), timeout=CALL_TIMEOUT)
            elif method == "Logs":
                list(stub.Logs(one_pb2.LogsRequest(pod_id="web"), timeout=CALL_TIMEOUT))
            else:
                list(stub.Exec(iter([one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="web"))]),
                               timeout=CALL_TIMEOUT))
    expected = grpc.StatusCode.INVALID_ARGUMENT if method == "CreatePod" \
        else grpc.StatusCode.NOT_FOUND
    assert err.value.code() == expected, err.value.details()


def test_50_concurrent_clients_20_health_calls_each(api_sock: Path) -> None:
    def client(_: int) -> int:
        channel, stub = _stub(f"unix:{api_sock}")
        with channel:
            return sum(stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT).healthy
                       for _ in range(20))

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(client, range(50)))  # an RpcError in any thread raises here
    assert results == [20] * 50


def _partial_http2_request(path: Path) -> None:
    """Start a Health call and vanish in the middle of its request message."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "init"),
                          (":path", "/mvirt.one.OneService/Health"),
                          ("content-type", "application/grpc"), ("te", "trailers")])
    conn.send_data(1, b"\x00\x00\x00\x00\x05\x0a")  # announces 5 bytes, sends 1
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(conn.data_to_send())
        s.settimeout(2)
        s.recv(65536)  # the server's SETTINGS: it has taken the request in
        time.sleep(0.2)  # the handler now waits for the rest of the message


def test_abrupt_disconnects_leave_the_server_healthy(api_sock: Path) -> None:
    _partial_http2_request(api_sock)
    with socket.socket(socket.AF_UNIX) as s:  # connect and leave at once
        s.connect(str(api_sock))
    with socket.socket(socket.AF_UNIX) as s:  # not HTTP/2 at all
        s.connect(str(api_sock))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(256))
    # A grpcio client that cancels a bidirectional stream while still sending.
    channel, stub = _stub(f"unix:{api_sock}")
    gate = threading.Event()

    def requests() -> Iterator[one_pb2.ExecInput]:
        yield one_pb2.ExecInput(start=one_pb2.ExecStart(pod_id="web", command=["sh"]))
        gate.wait(5)

    with channel:
        call = stub.Exec(requests(), timeout=CALL_TIMEOUT)
        time.sleep(0.2)
        call.cancel()
        gate.set()
    # Many at once, each closing mid-request.
    threads = [threading.Thread(target=_partial_http2_request, args=(api_sock,))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel, stub = _stub(f"unix:{api_sock}")
    with channel:
        assert stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT).healthy


def test_shutdown_over_the_api_ends_local_mode_with_0(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    init = LocalInit(tmp_path, f"unix:{path}")
    try:
        init.wait_for(r"phase ready")
        channel, stub = _stub(f"unix:{path}")
        with channel:
            reply = stub.Shutdown(one_pb2.ShutdownRequest(timeout_seconds=2), timeout=CALL_TIMEOUT)
        assert reply == one_pb2.Empty()
        assert init.proc.wait(timeout=30) == 0
    finally:
        init.stop()
    log = init.log()
    assert "shutdown requested (api)" in log
    assert "stopped" in log
    assert not path.exists(), "the socket file is removed on the way out"


def test_tcp_loopback_listener(tmp_path: Path) -> None:
    init = LocalInit(tmp_path, "tcp:127.0.0.1:0")
    try:
        port = int(init.wait_for(r"API listening on tcp:127\.0\.0\.1:(\d+)").group(1))
        init.wait_for(r"phase ready")
        channel, stub = _stub(f"127.0.0.1:{port}")
        with channel:
            assert stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT).healthy
            info = stub.GetNetworkInfo(one_pb2.Empty(), timeout=CALL_TIMEOUT)
        assert "lo" in {i.name for i in info.interfaces}
    finally:
        assert init.stop() == 0


def test_an_address_in_use_ends_local_mode_with_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        init = LocalInit(tmp_path, f"tcp:127.0.0.1:{port}")
        assert init.proc.wait(timeout=30) == 1
    init.wait_for(rf"error: cannot listen on tcp:127\.0\.0\.1:{port}: .*in use")


def _frozen() -> list[str]:
    if not FROZEN.exists():
        pytest.fail(f"{FROZEN} missing: build it with `.venv/bin/doit init` (make test does)")
    return [str(FROZEN)]


def test_frozen_init_serves_the_api(tmp_path: Path) -> None:
    """The PyInstaller tree, not the sources: catches modules the freeze left out, which only
    show when a call first imports them (the netlink modules, the generated messages)."""
    path = tmp_path / "api.sock"
    init = LocalInit(tmp_path, f"unix:{path}", [*_frozen(), "--log-level", "debug"])
    try:
        init.wait_for(r"phase ready")
        # Every dataclass and named tuple the boot made ran the build's compiled code
        # (init/precompiled.py): nothing was compiled on the way to READY.
        found = re.search(r"precompiled code: (\d+) texts found, (\d+) compiled", init.log())
        assert found and int(found[1]) > 100 and found[2] == "0", init.log()
        # And most patterns the imports compile came from it (a few are made from run-time text).
        found = re.search(r"regular expressions: (\d+) found, (\d+) compiled", init.log())
        assert found and int(found[1]) > 20 and int(found[2]) < int(found[1]), init.log()
        channel, stub = _stub(f"unix:{path}")
        with channel:
            assert stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT).version == VERSION
            info = stub.GetNetworkInfo(one_pb2.Empty(), timeout=CALL_TIMEOUT)
            # The pod service's modules are in the tree (imported by the API at start).
            assert list(stub.ListPods(one_pb2.Empty(), timeout=CALL_TIMEOUT).pods) == []
            stub.Shutdown(one_pb2.ShutdownRequest(), timeout=CALL_TIMEOUT)
        assert "127.0.0.1" in {i.ipv4_address for i in info.interfaces}
        assert init.proc.wait(timeout=30) == 0
    finally:
        init.stop()
    assert not re.search(r"error:|Traceback", init.log()), init.log()


def test_frozen_init_carries_no_protobuf() -> None:
    """The guest reads and writes its messages itself (init/api/wire.py): google.protobuf, its
    descriptors and protoc's modules stay out of the frozen archive, the messages are in."""
    from PyInstaller.archive.readers import CArchiveReader

    modules = set(CArchiveReader(_frozen()[0]).open_embedded_archive("PYZ.pyz").toc)
    assert {"oneproto.one_msgs", "oneproto.one_service", "init.api.wire"} <= modules
    assert not {m for m in modules if m.startswith(("google", "oneproto.one_pb2",
                                                    "oneproto.one_grpc"))}


def _latency(path: Path, calls: int = 1000) -> dict[str, float]:
    channel, stub = _stub(f"unix:{path}")
    samples: list[float] = []
    with channel:
        for _ in range(50):  # warm-up: connection, HTTP/2 settings, code paths
            stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT)
        for _ in range(calls):
            start = time.perf_counter()
            stub.Health(one_pb2.Empty(), timeout=CALL_TIMEOUT)
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"calls": calls, "median_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(calls * 0.99) - 1], 3), "max_ms": round(samples[-1], 3)}


def test_health_latency_over_unix(tmp_path: Path) -> None:
    """Measured, not asserted: printed and written to target/bench/api_unix.json. Both servers:
    the frozen init (as in the VM) and the sources."""
    servers: dict[str, dict[str, float]] = {}
    for name, argv in (("frozen init", _frozen()), ("python -m init", SOURCE_INIT)):
        work = tmp_path / name.replace(" ", "-")
        path = work / "api.sock"
        work.mkdir()
        init = LocalInit(work, f"unix:{path}", argv)
        try:
            init.wait_for(r"phase ready")
            figures = _latency(path)
        finally:
            assert init.stop() == 0
        servers[name] = figures
        print(f"\nHealth over unix, {name}, {figures['calls']} calls: "
              f"median {figures['median_ms']} ms, p99 {figures['p99_ms']} ms")
    result = {"rpc": "Health", "transport": "unix",
              "client": f"grpcio {grpc.__version__} (sync stub)", "servers": servers}
    BENCH.mkdir(parents=True, exist_ok=True)
    (BENCH / "api_unix.json").write_text(json.dumps(result, indent=2) + "\n")
