"""Hostile requests on the API of a local-mode init: oversized messages (by a grpcio client, and
by a raw HTTP/2 client that only announces them), undecodable and compressed messages. Each gets
its status at once, the init logs no error for it, and stays healthy and small."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oneproto import one_pb2, one_pb2_grpc
from tests.fixtures.local import LocalInit, serving
from tests.fixtures.pods import record, rss_kib
from tests.fixtures.rawh2 import frame, raw_call

CALL = 10.0
MIB = 1 << 20


@pytest.fixture
def init(tmp_path: Path) -> Iterator[LocalInit]:
    with serving(tmp_path) as local:
        yield local


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
    headers = raw_call(sock, "Health", frame(b"\x0a", length=(4 << 30) - 1))
    assert headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    after = rss_kib(init.proc.pid)
    assert after - before < 20 << 10
    record("request of 5 MiB (and one announcing 4 GiB)", before, after)


def test_undecodable_and_compressed_messages(init: LocalInit) -> None:
    sock = init.listen.removeprefix("unix:")
    before = rss_kib(init.proc.pid)
    garbage = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # a varint that never ends
    headers = raw_call(sock, "GetPod", frame(garbage))
    assert headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), headers
    assert "cannot be decoded" in headers.get("grpc-message", ""), headers
    headers = raw_call(sock, "Health", frame(b"", compressed=True))
    assert headers["grpc-status"] == str(grpc.StatusCode.UNIMPLEMENTED.value[0]), headers
    with grpc.insecure_channel(init.listen) as channel:
        stub = one_pb2_grpc.OneServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.Health(one_pb2.Empty(), timeout=CALL).healthy
    record("undecodable protobuf, compressed message", before, rss_kib(init.proc.pid))
