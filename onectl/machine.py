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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from onectl import tools
from onectl.address import API_PORT, MAX_UNIX_PATH, READY_PORT, Address
from onectl.errors import OnectlError
from onectl.process import wait_until
from onectl.qemu import Vm, VmSpec
from onectl.ready import ReadyListener
from onectl.vsock_daemon import VsockDaemon

Net = Literal["none", "user", "restricted"]


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
    # Plain user networking by default so qemu's DHCP hands out router and DNS (restrict=on
    # drops both); tests that need no outside world pass "restricted" or "none".
    net: Net = "user"
    guestfwd: list[str] = field(default_factory=list)
    cid: int = 3
    accel: Literal["auto", "tcg", "kvm"] = "auto"
    console: bool = False  # echo the serial console to stdout (it always goes to console.log)
    data_disk: Path | None = None  # an existing raw image (disk.ensure creates one)
    disks: list[tuple[Path, str]] = field(default_factory=list)  # more, by serial
    balloon: bool = True  # free page reporting: freed guest memory goes back to the host

    def vm_spec(self, vhost_socket: Path) -> VmSpec:
        return VmSpec(kernel=self.kernel, boot=self.boot, initrd=self.initrd, append=self.append,
                      machine="q35" if self.boot == "uefi" else "microvm",
                      memory_mib=self.memory_mib, cpus=self.cpus, rng=True, network=self.net,
                      guestfwd=list(self.guestfwd), vhost_user_vsock=vhost_socket,
                      data_disk=self.data_disk, disks=list(self.disks), balloon=self.balloon,
                      accel=self.accel)


@dataclass
class _Running:
    """What start() started; `processes` stops all of it, in reverse order, on close."""

    vm: Vm
    daemon: VsockDaemon
    ready: ReadyListener
    processes: contextlib.ExitStack


class Machine:
    def __init__(self, config: MachineConfig, run_dir: Path, *,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.run_dir = run_dir.absolute()
        self.say = say
        self.vhost_socket = self.run_dir / "vhost.sock"
        self.vsock_socket = self.run_dir / "vm.vsock"
        self.ready_socket = self.run_dir / f"vm.vsock_{READY_PORT}"
        self.ready_seconds: float | None = None  # qemu start → READY on the host
        self._run: _Running | None = None

    @property
    def address(self) -> Address:
        return Address("vsock-uds", path=self.vsock_socket, port=API_PORT)

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def vm(self) -> Vm | None:
        """The qemu of the last start (kept after stop for its console)."""
        return self._run.vm if self._run else None

    @property
    def ready(self) -> ReadyListener | None:
        return self._run.ready if self._run else None

    # --- start -----------------------------------------------------------------------------------

    def _resolve(self) -> tuple[tools.Host, Path]:
        """Everything the start needs from the host, checked before anything is started."""
        host = tools.probe_host(firmware=self.config.boot == "uefi")
        for path in (self.config.kernel, self.config.initrd, self.config.data_disk):
            if path is not None and not path.exists():
                raise OnectlError(f"{path}: no such file")
        if len(str(self.ready_socket).encode()) > MAX_UNIX_PATH:
            raise OnectlError(f"run directory {self.run_dir} is too long for unix socket paths "
                              f"({self.ready_socket} > {MAX_UNIX_PATH} bytes): pick a shorter "
                              "--run-dir")
        return host, tools.vhost_device_vsock()

    def start(self) -> Machine:
        host, daemon_binary = self._resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Whatever did start must not outlive a failed start: the stack unwinds it on an error.
        with contextlib.ExitStack() as stack:
            # Listen before the guest can possibly signal: a READY sent to nobody is lost (reset).
            ready = stack.enter_context(ReadyListener(self.ready_socket))
            daemon = stack.enter_context(VsockDaemon(
                daemon_binary, cid=self.config.cid, vhost_socket=self.vhost_socket,
                vsock_socket=self.vsock_socket, log=self.run_dir / "vhost-device-vsock.log"))
            daemon.wait_listening()
            vm = stack.enter_context(Vm(self.config.vm_spec(self.vhost_socket), self.run_dir,
                                        host=host, echo=self.config.console))
            self._run = _Running(vm, daemon, ready, stack.pop_all())
        return self

    def _running(self) -> _Running:
        if self._run is None:
            raise OnectlError("the VM has not been started")
        return self._run

    def wait_ready(self, timeout: float) -> float:
        """Seconds from qemu start to the guest's READY on the host; raises when qemu or the
        daemon dies first or `timeout` passes."""
        run = self._running()

        def alive() -> None:
            if not run.vm.running:
                raise OnectlError(f"qemu exited with {run.vm.returncode} before READY "
                                  f"(console: {self.console_log})")
            run.daemon.check(" before READY")

        wait_until(lambda: run.ready.ready, timeout=timeout, alive=alive,
                   expired=f"no READY from the guest within {timeout:g}s "
                   f"(console: {self.console_log})")
        assert run.ready.at is not None  # set before ready is
        self.ready_seconds = run.ready.at - run.vm.started
        return self.ready_seconds

    # --- running and stopping ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._run is not None and self._run.vm.running

    def wait_exit(self, timeout: float | None = None) -> int:
        """qemu's exit code (blocks; raises subprocess.TimeoutExpired after `timeout`)."""
        return self._running().vm.wait(timeout)

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

    def _powerdown(self, vm: Vm) -> bool:
        try:
            vm.qmp("system_powerdown")
            return True
        except (OSError, ValueError, OnectlError) as e:
            self.say(f"QMP system_powerdown failed: {e}")
            return False

    def _shut_down(self, run: _Running, grace: int, timeout: float) -> None:
        """Ask the guest to power off: the API's Shutdown once READY, else the ACPI power
        button; each step gets `timeout` seconds."""
        steps: list[tuple[str, Callable[[], bool]]] = []
        if run.ready.ready:
            steps.append(("Shutdown via the API", lambda: self._api_shutdown(grace)))
        steps.append(("ACPI power button (QMP system_powerdown)",
                      lambda: self._powerdown(run.vm)))
        for what, action in steps:
            self.say(f"stopping the VM: {what}")
            if action():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.vm.wait(timeout)
                    return
        self.say(f"the VM did not power off within {timeout:g}s: killing qemu")
        return None

    def stop(self, *, grace: int = 10, timeout: float = 60.0) -> int | None:
        """Stop the VM cleanly if it runs, kill it if that fails; then stop the vsock daemon and
        the ready listener. Returns qemu's exit code (None if it never started). Stopping again
        is a no-op. A second Ctrl-C while waiting kills at once."""
        run = self._run
        if run is None:
            return None
        try:
            # Closing the stack kills qemu if it still runs, stops the daemon and closes the
            # listener, however the shutdown ends.
            with run.processes:
                if run.vm.running:
                    self._shut_down(run, grace, timeout)
        except KeyboardInterrupt:
            self.say("interrupted again: qemu was killed")
        return run.vm.returncode

    def __enter__(self) -> Machine:
        # `with Machine(...).start() as m:` must not start a second VM beside the first.
        return self if self._run is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
