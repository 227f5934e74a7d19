"""Hostile requests on the API of a local-mode init: oversized messages (by a grpcio client, and
by a raw HTTP/2 client that only announces them), undecodable and compressed messages. Each gets
its status at once, the init logs no error for it, and stays healthy and small."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.local import LocalInit
from tests.fixtures.pods import record, rss_kib

CALL = 10.0
MIB = 1 << 20


@pytest.fixture
def init(tmp_path: Path) -> Iterator[LocalInit]:
    local = LocalInit(tmp_path, f"unix:{tmp_path / 'api.sock'}")
    try:
        local.wait_for(r"phase ready")
        yield local
        assert local.proc.poll() is None, f"the init died:\n{local.log()}"
    finally:
        rc = local.stop()
    assert rc == 0, local.log()
    assert not re.search(r"error:|Traceback", local.log()), local.log()


def _raw_call(sock_path: str, method: str, body: bytes) -> dict[str, str]:
    """Send one request whose DATA is `body` (gRPC framing included, as the caller made it)
    and return the response's headers and trailers."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "init"),
                          (":path", f"/mvirt.one.OneService/{method}"),
                          ("content-type", "application/grpc"), ("te", "trailers")])
    conn.send_data(1, body)
    headers: dict[str, str] = {}
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(conn.data_to_send())
        s.settimeout(CALL)
        while "grpc-status" not in headers:
            data = s.recv(65536)
            assert data, f"connection closed before a status; headers so far: {headers}"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers.update((k.decode(), v.decode()) for k, v in event.headers)
            s.sendall(conn.data_to_send())
    return headers


def _frame(message: bytes, *, length: int | None = None, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(message) if length is None else length) + message


def test_oversized_messages_are_refused_before_they_are_read(init: LocalInit) -> None:
    sock = init.listen.removeprefix("unix:")
    before = rss_kib(init.proc.pid)
    with grpc.insecure_channel(init.listen) as channel:
        stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as info:
                stub.CreatePod(one_pb2.CreatePodRequest(id="big", name="n" * (5 * MIB)),
                               timeout=CALL)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than" in info.value.details()
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy  # the same connection
        # Just below the limit still goes through, and fails for what it says, at once: the
        # error quotes the id, but not all 4 MiB of it.
        with pytest.raises(grpc.RpcError) as info:
            stub.GetPod(one_pb2.GetPodRequest(id="x" * (4 * MIB - 64)), timeout=CALL)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert len(info.value.details()) <= 1024 and "characters" in info.value.details()
    # Announced, never sent: answered at once, nothing waited for or buffered.
    headers = _raw_call(sock, "Health", _frame(b"\x0a", length=(4 << 30) - 1))
    assert headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    after = rss_kib(init.proc.pid)
    assert after - before < 20 << 10
    record("request of 5 MiB (and one announcing 4 GiB)", before, after)


def test_undecodable_and_compressed_messages(init: LocalInit) -> None:
    sock = init.listen.removeprefix("unix:")
    before = rss_kib(init.proc.pid)
    garbage = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # a varint that never ends
    headers = _raw_call(sock, "GetPod", _frame(garbage))
    assert headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), headers
    assert "cannot be decoded" in headers.get("grpc-message", ""), headers
    headers = _raw_call(sock, "Health", _frame(b"", compressed=True))
    assert headers["grpc-status"] == str(grpc.StatusCode.UNIMPLEMENTED.value[0]), headers
    with grpc.insecure_channel(init.listen) as channel:
        stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy
    record("undecodable protobuf, compressed message", before, rss_kib(init.proc.pid))
