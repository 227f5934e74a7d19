"""The host end of the ready signal, and the checks `onectl run` makes before starting anything."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from onectl.errors import OnectlError
from onectl.machine import Machine, MachineConfig
from onectl.ready import ReadyListener


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="onectl-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _send(path: Path, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(data)


def test_ready_line_is_recognised_after_other_connections(short_tmp: Path) -> None:
    listener = ReadyListener(short_tmp / "vm.vsock_1025")
    try:
        _send(listener.path, b"HELLO\n")
        _send(listener.path, b"")  # connect and close, as a failed guest attempt would
        assert not listener.wait(0.3)
        _send(listener.path, b"READY\n")
        assert listener.wait(5)
        assert listener.at is not None
        assert listener.lines[-1] == b"READY\n"
    finally:
        listener.close()
    assert not listener.path.exists()


def test_ready_replaces_a_stale_socket(short_tmp: Path) -> None:
    stale = short_tmp / "vm.vsock_1025"
    stale.write_text("left over by a killed run")
    listener = ReadyListener(stale)
    try:
        _send(stale, b"READY\n")
        assert listener.wait(5)
    finally:
        listener.close()


def test_run_dir_too_long_for_socket_paths(short_tmp: Path) -> None:
    uki = short_tmp / "x.efi"
    uki.write_bytes(b"MZ")
    machine = Machine(MachineConfig(kernel=uki, boot="direct", initrd=uki),
                      short_tmp / ("d" * 100))
    with pytest.raises(OnectlError, match="too long for unix socket paths"):
        machine.start()
    assert not (short_tmp / ("d" * 100)).exists()  # nothing was started or created
