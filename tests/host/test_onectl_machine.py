"""Machine start and stop on every way out: whatever started (ready listener, vsock daemon, qemu)
is gone afterwards. A stand-in vsock daemon (a script that records its pid) and the real qemu,
given a kernel it cannot load or one that only halts, make the failures happen without booting
anything."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from onectl import disk, tools
from onectl.errors import OnectlError
from onectl.machine import Machine, MachineConfig
from onectl.qemu import Vm, VmSpec

# Listens on the vhost-user socket as vhost-device-vsock does, then waits to be terminated.
DAEMON = """#!{python}
import os, socket, sys, time
args = dict(kv.split("=", 1) for kv in sys.argv[2].split(","))
open({pidfile!r}, "w").write(str(os.getpid()))
if {fail}:
    print("cannot open the vsock device", file=sys.stderr)
    sys.exit(3)
s = socket.socket(socket.AF_UNIX)
s.bind(args["socket"])
s.listen(1)
time.sleep(600)
"""


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="onectl-m-"))  # unix socket paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _need_qemu() -> None:
    """qemu is a bootstrap package: missing, the test fails with what installs it."""
    try:
        tools.qemu()
    except OnectlError as e:
        pytest.fail(str(e))


def _daemon(tmp: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool) -> Path:
    _need_qemu()
    pidfile = tmp / "daemon.pid"
    script = tmp / "fake-vhost-device-vsock"
    script.write_text(DAEMON.format(python=sys.executable, pidfile=str(pidfile), fail=fail))
    script.chmod(0o755)
    monkeypatch.setenv(tools.VSOCK_DAEMON_ENV, str(script))
    return pidfile


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _halting_kernel() -> bytes:
    """A multiboot image qemu loads at 1 MiB whose code is `cli; hlt`: a guest that never
    signals READY and ignores the power button."""
    magic, flags, base = 0x1BADB002, 0x00010000, 0x100000  # flags: load at the given addresses
    header = struct.pack("<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF, base, base, 0, 0,
                         base + 32)
    return header + bytes([0xFA, 0xF4, 0xEB, 0xFD])


def _left_running(run_dir: Path) -> list[str]:
    """Command lines of the processes that still name the run directory (qemu, the daemon)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(cmdline)
    return found


def _need_qemu_and_the_daemon() -> None:
    """qemu, and vhost-device-vsock as every boot finds it; fetched from sid into the tools
    cache (as `doit hosttools` does) when it is in none of its places, so these tests run
    whatever ran before them."""
    _need_qemu()
    try:
        tools.vhost_device_vsock()
    except OnectlError:
        from onebuild import hosttools

        hosttools.fetch_vhost_device_vsock()
        tools.vhost_device_vsock()  # now found in the cache


def _config(tmp: Path, image: bytes = b"not a kernel") -> MachineConfig:
    kernel = tmp / "bzImage"
    kernel.write_bytes(image)
    return MachineConfig(kernel=kernel, boot="direct", initrd=kernel, append="quiet",
                         net="none", accel="tcg")


def test_a_daemon_that_dies_at_start_leaves_nothing_behind(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _daemon(short_tmp, monkeypatch, fail=True)
    machine = Machine(_config(short_tmp), short_tmp / "run")
    with pytest.raises(OnectlError, match="vhost-device-vsock exited with 3: cannot open"):
        machine.start()
    assert machine.vm is None and not machine.running
    assert not machine.ready_socket.exists()  # the ready listener is closed
    assert machine.stop() is None


def test_qemu_that_exits_at_start_stops_the_daemon_and_listener(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = _daemon(short_tmp, monkeypatch, fail=False)
    machine = Machine(_config(short_tmp), short_tmp / "run").start()
    daemon_pid = int(pidfile.read_text())
    assert not _gone(daemon_pid)
    with pytest.raises(OnectlError, match="qemu exited with 1 before READY"):
        machine.wait_ready(60)
    assert machine.vm is not None
    machine.vm.wait_for(r"^qemu: ", 5)  # qemu's own reason is on the console
    assert machine.stop(timeout=5) == 1
    assert _gone(daemon_pid)
    assert not machine.ready_socket.exists()
    assert machine.stop() == 1  # a second stop changes nothing


def test_a_guest_that_ignores_the_power_button_is_killed(short_tmp: Path) -> None:
    # The real daemon: qemu must get through the vhost-user handshake to serve QMP.
    _need_qemu_and_the_daemon()
    said: list[str] = []
    machine = Machine(_config(short_tmp, _halting_kernel()), short_tmp / "run",
                      say=said.append).start()
    with pytest.raises(OnectlError, match=r"no READY from the guest within 0\.5s"):
        machine.wait_ready(0.5)
    assert machine.running
    assert machine.stop(timeout=1) == -9  # SIGKILL
    assert said == ["stopping the VM: ACPI power button (QMP system_powerdown)",
                    "the VM did not power off within 1s: killing qemu"]
    assert _left_running(machine.run_dir) == []
    assert not machine.running and not machine.ready_socket.exists()


def test_leaving_the_with_block_on_an_error_stops_everything(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = _daemon(short_tmp, monkeypatch, fail=False)
    with pytest.raises(OnectlError, match="qemu exited"), \
            Machine(_config(short_tmp), short_tmp / "run") as machine:
        machine.wait_ready(60)
    assert _gone(int(pidfile.read_text()))
    assert machine.vm is not None and machine.vm.returncode == 1
    assert not machine.ready_socket.exists()


def test_a_started_machine_in_a_with_block_is_not_started_twice(short_tmp: Path) -> None:
    _need_qemu_and_the_daemon()
    started = Machine(_config(short_tmp, _halting_kernel()), short_tmp / "run").start()
    first = started.vm
    with started as machine:
        assert machine is started and machine.vm is first  # the same qemu, no second one
        daemons = _left_running(machine.run_dir)
        assert len([d for d in daemons if "vhost-device-vsock" in d]) == 1, daemons
        machine.stop(timeout=1)  # the guest ignores the power button: do not wait a minute
    assert _left_running(started.run_dir) == []


@pytest.mark.parametrize("machine_type,device", [("q35", "virtio-blk-pci"),
                                                 ("microvm", "virtio-blk-device")])
def test_qemu_attaches_the_data_disk_as_virtio_blk(short_tmp: Path, machine_type: str,
                                                   device: str) -> None:
    _need_qemu()
    kernel = short_tmp / "halt"
    kernel.write_bytes(_halting_kernel())
    image = short_tmp / "data.img"
    assert disk.ensure(disk.DataDisk(image, 1 << 30))
    spec = VmSpec(kernel=kernel, boot="direct", machine=machine_type,  # type: ignore[arg-type]
                  data_disk=image, rng=False, accel="tcg")
    with Vm(spec, short_tmp / "vm") as vm:
        [block] = vm.qmp("query-block")["return"]  # type: ignore[misc]
        assert block["device"] == "d0"
        assert block["inserted"]["image"] == {
            "filename": str(image), "format": "raw", "virtual-size": 1 << 30, "actual-size": 0,
            "dirty-flag": False}
        qdev = block["qdev"].removesuffix("/virtio-backend")
        assert vm.qmp("qom-get", path=qdev, property="type")["return"] == device
        assert vm.qmp("qom-get", path=block["qdev"], property="serial")["return"] == \
            "mvirt-one-data"
    assert image.stat().st_blocks == 0  # attaching wrote nothing: the disk stays blank
