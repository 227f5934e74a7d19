"""The hybrid-vsock handshake and the relay grpcio dials, against a fake hybrid-vsock socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onectl import hybrid_vsock
from onectl.errors import ConnectError, Exit
from onectl.relay import HybridVsockRelay
from tests.unit.test_onectl_fakes import FakeHybridVsock, Reply


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107-byte unix socket limit once a socket name is added.
    path = Path(tempfile.mkdtemp(prefix="onectl-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_handshake_sends_connect_and_keeps_bytes_after_ok(short_tmp: Path) -> None:
    fake = FakeHybridVsock(short_tmp / "vm.vsock", greeting=b"server speaks first")
    with fake, hybrid_vsock.connect(fake.path, 1024, timeout=5) as sock:
        # The bytes the guest sent right behind "OK n\n" are the caller's, not the handshake's.
        assert _recv_exactly(sock, 19) == b"server speaks first"
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"
    assert fake.requests == [b"CONNECT 1024\n"]


def test_other_ports_are_asked_for_by_number(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "vm.vsock") as fake:
        hybrid_vsock.connect(fake.path, 4294967295, timeout=5).close()
    assert fake.requests == [b"CONNECT 4294967295\n"]


def test_retries_while_the_guest_does_not_listen(short_tmp: Path) -> None:
    replies: list[Reply] = ["reset", "close", "reset", "close", "ok"]
    fake = FakeHybridVsock(short_tmp / "vm.vsock", replies=replies)
    with fake, hybrid_vsock.connect(fake.path, 1024, timeout=10) as sock:
        sock.sendall(b"x")
        assert _recv_exactly(sock, 1) == b"x"
    assert fake.connections == 5


def test_gives_up_at_the_deadline_when_nothing_listens(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "vm.vsock", replies=["close"]) as fake:
        start = time.monotonic()
        with pytest.raises(ConnectError, match="nothing listens on vsock port 1024") as info:
            hybrid_vsock.connect(fake.path, 1024, timeout=0.5)
        assert 0.4 < time.monotonic() - start < 3
    assert info.value.code == Exit.UNAVAILABLE
    assert fake.connections > 2


def test_garbled_reply_is_final(short_tmp: Path) -> None:
    fake = FakeHybridVsock(short_tmp / "vm.vsock", replies=["garbled", "ok"])
    with fake, pytest.raises(hybrid_vsock.HandshakeError, match="unexpected hybrid-vsock") as info:
        hybrid_vsock.connect(fake.path, 1024, timeout=5)
    assert info.value.code == Exit.UNAVAILABLE
    assert fake.connections == 1  # not retried: this is not a booting guest


def test_silent_server_times_out(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "vm.vsock", replies=["silent"]) as fake, \
            pytest.raises(ConnectError, match="no handshake reply"):
        hybrid_vsock.connect(fake.path, 1024, timeout=0.3)


def test_missing_socket_fails_at_once(short_tmp: Path) -> None:
    # "At once" means without retrying until the deadline: measured against the deadline (a
    # minute), so that a loaded host's delays never count, and retrying would.
    timeout = 60.0
    start = time.monotonic()
    with pytest.raises(ConnectError, match="no such socket"):
        hybrid_vsock.connect(short_tmp / "absent.vsock", 1024, timeout=timeout)
    assert time.monotonic() - start < timeout / 4


def test_socket_nobody_serves_fails_at_once(short_tmp: Path) -> None:
    path = short_tmp / "dead.vsock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: connect() is refused
        with pytest.raises(ConnectError, match="connection refused"):
            hybrid_vsock.connect(path, 1024, timeout=10)


def test_relay_copies_both_ways_and_passes_eof(short_tmp: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    with FakeHybridVsock(short_tmp / "vm.vsock") as fake, \
            HybridVsockRelay(fake.path, 1024, connect_timeout=5) as relay:
        assert relay.target.startswith("unix:")
        assert oct(relay.socket_path.parent.stat().st_mode & 0o777) == "0o700"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(relay.socket_path))

            def send() -> None:
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            echoed = b""
            while chunk := client.recv(1 << 20):
                echoed += chunk
            sender.join()
        assert echoed == payload  # the echo came back whole, and our EOF reached the far side
        assert relay.handshakes == 1
    assert fake.requests == [b"CONNECT 1024\n"]
    assert not relay.socket_path.parent.exists()  # the private directory is removed


def test_relay_records_why_a_handshake_failed(short_tmp: Path) -> None:
    with FakeHybridVsock(short_tmp / "vm.vsock", replies=["garbled"]) as fake, \
            HybridVsockRelay(fake.path, 1024, connect_timeout=1) as relay:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(relay.socket_path))
            assert client.recv(10) == b""  # the relay closes the stream it cannot serve
        assert isinstance(relay.last_error, hybrid_vsock.HandshakeError)
        assert relay.handshakes == 0
