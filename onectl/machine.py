"""A VM with the mvirt-one API reachable from the host: vhost-device-vsock + qemu + the ready
signal, started and stopped together. `onectl run`, `doit run` and the VM tests use it.

Layout of the run directory (all sockets of one VM in one place, as cloud-hypervisor users expect):
  vhost.sock              vhost-user control socket (qemu ↔ vhost-device-vsock)
  vm.vsock                hybrid vsock: the API is `vsock-uds:DIR/vm.vsock:1024`
  vm.vsock_1025           the host's ready-signal listener (guest → CID 2 port 1025)
  console.log             the serial console; qemu.cmdline, vhost-device-vsock.log
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from onectl import tools
from onectl.address import API_PORT, MAX_UNIX_PATH, READY_PORT, Address
from onectl.errors import OnectlError
from onectl.qemu import Vm, VmError, VmSpec
from onectl.ready import ReadyListener

Net = Literal["none", "user", "restricted"]
DAEMON_START_TIMEOUT = 10.0


@dataclass
class MachineConfig:
    """What to boot. `kernel` is a UKI (boot="uefi": q35 + OVMF) or a bzImage (boot="direct":
    microvm with --initrd/--append)."""

    kernel: Path
    boot: Literal["uefi", "direct"] = "uefi"
    initrd: Path | None = None
    append: str | None = None
    memory_mib: int = 128
    cpus: int = 1
    # Plain user networking by default so qemu's DHCP hands out router and DNS (ENVIRONMENT.md:
    # restrict=on drops them); tests that need no outside world pass "restricted" or "none".
    net: Net = "user"
    guestfwd: list[str] = field(default_factory=list)
    cid: int = 3
    accel: Literal["auto", "tcg", "kvm"] = "auto"
    console: bool = False  # echo the serial console to stdout (it always goes to console.log)

    def vm_spec(self, vhost_socket: Path) -> VmSpec:
        return VmSpec(kernel=self.kernel, boot=self.boot, initrd=self.initrd, append=self.append,
                      machine="q35" if self.boot == "uefi" else "microvm",
                      memory_mib=self.memory_mib, cpus=self.cpus, rng=True, network=self.net,
                      guestfwd=list(self.guestfwd), vhost_user_vsock=vhost_socket,
                      accel=self.accel)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Machine:
    def __init__(self, config: MachineConfig, run_dir: Path, *,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.run_dir = run_dir.absolute()
        self.say = say
        self.vhost_socket = self.run_dir / "vhost.sock"
        self.vsock_socket = self.run_dir / "vm.vsock"
        self.ready_socket = self.run_dir / f"vm.vsock_{READY_PORT}"
        self.daemon_log = self.run_dir / "vhost-device-vsock.log"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.vm: Vm | None = None
        self.ready: ReadyListener | None = None
        self.ready_seconds: float | None = None  # qemu start → READY on the host

    @property
    def address(self) -> Address:
        return Address("vsock-uds", path=self.vsock_socket, port=API_PORT)

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    # --- start -----------------------------------------------------------------------------------

    def _check(self) -> None:
        tools.qemu()
        if self.config.boot == "uefi":
            tools.ovmf()
        for path in (self.config.kernel, self.config.initrd):
            if path is not None and not path.is_file():
                raise OnectlError(f"{path}: no such file")
        if len(str(self.ready_socket).encode()) > MAX_UNIX_PATH:
            raise OnectlError(f"run directory {self.run_dir} is too long for unix socket paths "
                              f"({self.ready_socket} > {MAX_UNIX_PATH} bytes): pick a shorter "
                              "--run-dir")

    def start(self) -> Machine:
        self._check()
        try:
            return self._start()
        except BaseException:
            self.stop()  # whatever did start (daemon, listener) must not outlive a failed start
            raise

    def _start(self) -> Machine:
        daemon = tools.vhost_device_vsock()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.vhost_socket, self.vsock_socket):
            stale.unlink(missing_ok=True)
        # Listen before the guest can possibly signal: a READY sent to nobody is lost (reset).
        self.ready = ReadyListener(self.ready_socket)
        vm_arg = (f"guest-cid={self.config.cid},socket={self.vhost_socket},"
                  f"uds-path={self.vsock_socket}")
        with self.daemon_log.open("wb") as log:
            self.daemon = subprocess.Popen([str(daemon), "--vm", vm_arg],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           start_new_session=True)
        self._wait_daemon()
        try:
            self.vm = Vm(self.config.vm_spec(self.vhost_socket), self.run_dir,
                         echo=self.config.console).start()
        except VmError as e:
            raise OnectlError(str(e)) from None
        return self

    def _wait_daemon(self) -> None:
        """vhost-device-vsock creates its vhost-user socket when ready for qemu to connect."""
        assert self.daemon is not None
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while not self.vhost_socket.exists():
            if self.daemon.poll() is not None:
                raise OnectlError(f"vhost-device-vsock exited with {self.daemon.returncode}: "
                                  f"{_tail(self.daemon_log, 5)}")
            if time.monotonic() > deadline:
                raise OnectlError(f"vhost-device-vsock did not create {self.vhost_socket} "
                                  f"within {DAEMON_START_TIMEOUT:g}s")
            time.sleep(0.01)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from qemu start to the guest's READY on the host; raises when qemu or the
        daemon dies first or `timeout` passes."""
        assert self.vm is not None and self.vm.proc is not None and self.ready is not None
        assert self.daemon is not None
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.vm.proc.poll() is not None:
                raise OnectlError(f"qemu exited with {self.vm.proc.returncode} before READY "
                                  f"(console: {self.console_log})")
            if self.daemon.poll() is not None:
                raise OnectlError(f"vhost-device-vsock exited with {self.daemon.returncode} "
                                  f"before READY: {_tail(self.daemon_log, 5)}")
            if time.monotonic() > deadline:
                raise OnectlError(f"no READY from the guest within {timeout:g}s "
                                  f"(console: {self.console_log})")
        assert self.ready.at is not None
        self.ready_seconds = self.ready.at - self.vm.started
        return self.ready_seconds

    # --- running and stopping ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.vm is not None and self.vm.proc is not None and self.vm.proc.poll() is None

    def wait_exit(self, timeout: float | None = None) -> int:
        """qemu's exit code (blocks; raises subprocess.TimeoutExpired after `timeout`)."""
        assert self.vm is not None and self.vm.proc is not None
        return self.vm.proc.wait(timeout)

    def _api_shutdown(self, grace: int) -> bool:
        # Imported here: starting and watching a VM needs no gRPC.
        from onectl.client import Client
        from onectl.settings import Settings
        from oneproto import one_pb2

        try:
            with Client(Settings(self.address, timeout=10, connect_timeout=2)) as client:
                client.call(client.stub.Shutdown, one_pb2.ShutdownRequest(timeout_seconds=grace))
            return True
        except OnectlError as e:
            self.say(f"Shutdown over the API failed ({e}); pressing the power button")
            return False

    def _powerdown(self) -> bool:
        assert self.vm is not None
        try:
            self.vm.qmp("system_powerdown")
            return True
        except (OSError, ValueError, VmError) as e:
            self.say(f"QMP system_powerdown failed: {e}")
            return False

    def stop(self, *, grace: int = 10, timeout: float = 60.0) -> int | None:
        """Stop the VM cleanly if it runs (API Shutdown once READY, else the ACPI power button;
        each given `timeout` seconds), kill it if that fails; then stop the vsock daemon.
        Returns qemu's exit code. A second Ctrl-C while waiting kills at once."""
        code: int | None = None
        try:
            if self.running:
                assert self.vm is not None and self.vm.proc is not None
                steps: list[tuple[str, Callable[[], bool]]] = []
                if self.ready is not None and self.ready.ready:
                    steps.append(("Shutdown via the API", lambda: self._api_shutdown(grace)))
                steps.append(("ACPI power button (QMP system_powerdown)", self._powerdown))
                for what, action in steps:
                    self.say(f"stopping the VM: {what}")
                    if not action():
                        continue
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        code = self.vm.proc.wait(timeout)
                        break
                if code is None and self.running:
                    self.say(f"the VM did not power off within {timeout:g}s: killing qemu")
            elif self.vm is not None and self.vm.proc is not None:
                code = self.vm.proc.returncode
        except KeyboardInterrupt:
            self.say("interrupted again: killing qemu")
        finally:
            if self.vm is not None:
                self.vm.kill()
                if code is None and self.vm.proc is not None:
                    code = self.vm.proc.returncode
            self._stop_daemon()
            if self.ready is not None:
                self.ready.close()
        return code

    def _stop_daemon(self) -> None:
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self.daemon.terminate()
        try:
            self.daemon.wait(5)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()

    def __enter__(self) -> Machine:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
