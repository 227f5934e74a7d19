"""The API's pre-bound listeners: unix (0600, stale files), TCP, vsock, and bad addresses."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from init.api import listeners
from init.api.listeners import ListenError


def test_unix_socket_is_owner_only_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    listener = listeners.bind(f"unix:{path}")
    try:
        assert listener.address == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
    finally:
        listener.close()
    assert not path.exists()


def test_stale_unix_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()  # the file stays, nobody listens: what a killed init leaves behind
    listener = listeners.bind(f"unix:{path}")
    try:
        assert listener.address == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The stale file refused connections; the path now reaches the new listener.
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            accepted, _ = listener.sock.accept()
            accepted.close()
    finally:
        listener.close()
    assert not path.exists()


def test_live_unix_socket_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    first = listeners.bind(f"unix:{path}")
    try:
        with pytest.raises(ListenError, match="another process is serving"):
            listeners.bind(f"unix:{path}")
        assert path.exists()
    finally:
        first.close()


def test_a_regular_file_at_the_path_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(ListenError, match="not a socket"):
        listeners.bind(f"unix:{path}")
    assert path.read_text() == "keep me"


def test_tcp_port_zero_reports_the_bound_port() -> None:
    listener = listeners.bind("tcp:127.0.0.1:0")
    try:
        port = listener.sock.getsockname()[1]
        assert port != 0
        assert listener.address == f"tcp:127.0.0.1:{port}"
    finally:
        listener.close()


def test_tcp_port_in_use_is_a_clear_error() -> None:
    first = listeners.bind("tcp:127.0.0.1:0")
    try:
        port = first.sock.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on tcp:127.0.0.1:{port}"):
            listeners.bind(f"tcp:127.0.0.1:{port}")
    finally:
        first.close()


def test_vsock_listener_binds_any_cid() -> None:
    try:
        listener = listeners.bind("vsock:0")  # any free port; the host has the vsock family
    except ListenError as e:
        pytest.skip(f"no AF_VSOCK on this host: {e}")
    try:
        cid, _port = listener.sock.getsockname()
        assert cid == socket.VMADDR_CID_ANY
        assert listener.sock.family == socket.AF_VSOCK
    finally:
        listener.close()


@pytest.mark.parametrize(("listen", "message"), [
    ("vsock:x", "not a port number"),
    ("tcp:localhost:80", "must be an IP address"),
    ("tcp:127.0.0.1:99999999999", "out of range"),
    ("unix:", "empty socket path"),
    ("http://x", "use vsock:PORT"),
])
def test_bad_addresses_say_what_is_wrong(listen: str, message: str) -> None:
    with pytest.raises(ListenError, match=message):
        listeners.bind(listen)
