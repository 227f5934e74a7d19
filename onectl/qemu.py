"""Booting mvirt-one in qemu: the command line, the serial console and the QMP control socket.

Used by `onectl run`, `doit run` and the VM tests. Under TCG (this project's CI has no usable KVM)
every wait is for a console line or a socket, with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OVMF = Path("/usr/share/ovmf/OVMF.fd")


class VmError(RuntimeError):
    pass


def kvm_usable() -> bool:
    """Real KVM only: /dev/kvm exists on hosts where it is an emulation (kvm_pvm) that cannot run
    a guest at useful speed, so require the hardware modules to be loaded."""
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        modules = Path("/proc/modules").read_text()
    except OSError:
        return False
    return any(line.startswith(("kvm_intel ", "kvm_amd ")) for line in modules.splitlines())


def host_tsc_khz() -> int | None:
    """The host's TSC frequency in kHz, from /proc/cpuinfo (None if it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":", 1)[1]) * 1000)
    except (OSError, ValueError):
        return None
    return None


def find_qemu() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VmError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    return path


@dataclass
class VmSpec:
    """What to boot and how. `kernel` is the UKI (boot: uefi) or a bzImage (boot: direct)."""

    kernel: Path
    boot: Literal["uefi", "direct"] = "uefi"
    initrd: Path | None = None
    append: str | None = None
    machine: Literal["q35", "microvm"] = "q35"
    memory_mib: int = 128
    cpus: int = 1
    rng: bool = True
    network: Literal["none", "user", "restricted"] = "none"
    guestfwd: list[str] = field(default_factory=list)
    vhost_user_vsock: Path | None = None  # the vhost-device-vsock socket
    accel: Literal["auto", "tcg", "kvm"] = "auto"
    extra: list[str] = field(default_factory=list)

    def argv(self, *, qmp: Path) -> list[str]:
        pci = self.machine == "q35"
        argv = [find_qemu(), "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot", "-serial", "stdio", "-qmp", f"unix:{qmp},server=on,wait=off",
                "-smp", str(self.cpus), "-m", f"{self.memory_mib}M"]
        use_kvm = self.accel == "kvm" or (self.accel == "auto" and kvm_usable())
        argv += ["-accel", "kvm" if use_kvm else "tcg"]
        if use_kvm:
            argv += ["-cpu", "host"]
        # microvm under TCG hangs after "tsc: Marking TSC unstable" without the PIT.
        argv += ["-M", "q35" if pci else "microvm,pit=on"]
        if self.boot == "uefi":
            if not OVMF.exists():
                raise VmError(f"{OVMF} missing: apt-get install ovmf")
            argv += ["-bios", str(OVMF), "-kernel", str(self.kernel)]
            if self.append:
                # OVMF hands -append to the UKI as its load options; systemd-stub then uses them
                # instead of the embedded .cmdline (unsigned image, no Secure Boot).
                argv += ["-append", self.append]
        else:
            argv += ["-kernel", str(self.kernel)]
            if self.initrd:
                argv += ["-initrd", str(self.initrd)]
            append = self.append
            khz = host_tsc_khz() if not use_kvm and not pci else None
            if append is not None and khz:
                # microvm has no HPET or PM timer: under TCG the kernel calibrates the TSC
                # against the PIT, which fails when the host is busy, and then hangs before
                # /init ("tsc: Unable to calibrate against PIT"). TCG's guest TSC is the host's,
                # so its frequency can be given instead of measured.
                append += f" tsc_early_khz={khz}"
            if append:
                argv += ["-append", append]
        if self.vhost_user_vsock is not None:
            # vhost-user needs the guest's memory shared with the vsock daemon.
            argv += ["-object", f"memory-backend-memfd,id=mem,size={self.memory_mib}M,share=on",
                     "-machine", "memory-backend=mem",
                     "-chardev", f"socket,id=vsock0,path={self.vhost_user_vsock}",
                     "-device",
                     ("vhost-user-vsock-pci" if pci else "vhost-user-vsock-device")
                     + ",chardev=vsock0"]
        if self.rng:
            argv += ["-device", "virtio-rng-pci" if pci else "virtio-rng-device"]
        if self.network != "none":
            netdev = "user,id=n0"
            if self.network == "restricted":
                netdev += ",restrict=on"
            for fwd in self.guestfwd:
                netdev += f",guestfwd={fwd}"
            argv += ["-netdev", netdev,
                     "-device", ("virtio-net-pci" if pci else "virtio-net-device") + ",netdev=n0"]
        return argv + self.extra


class Vm:
    """A running qemu: its console lines (kept and logged to a file) and QMP commands."""

    def __init__(self, spec: VmSpec, workdir: Path, *, echo: bool = False) -> None:
        self.spec = spec
        self.workdir = workdir
        self.console_log = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.lines: list[tuple[float, str]] = []  # (seconds since qemu start, line)
        self._cond = threading.Condition()
        self._echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Vm:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        argv = self.spec.argv(qmp=self.qmp_path)
        (self.workdir / "qemu.cmdline").write_text(" ".join(argv) + "\n")
        self.started = time.monotonic()
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground process group,
        # and qemu would die at once on SIGINT instead of letting `onectl run` shut it down.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._read_console, daemon=True).start()
        return self

    def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.console_log.open("w", errors="replace") as log:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                stamp = time.monotonic() - self.started
                log.write(line + "\n")
                log.flush()
                if self._echo:
                    print(line, flush=True)
                with self._cond:
                    self.lines.append((stamp, line))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        """Wait for a console line matching `pattern`; returns (seconds since start, match)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for stamp, line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return stamp, m
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if remaining <= 0 or exited:
                    why = "qemu exited" if exited else f"timed out after {timeout:.0f}s"
                    raise VmError(f"{why} waiting for /{pattern}/; console tail:\n"
                                  + self.tail())
                self._cond.wait(min(remaining, 0.5))

    def tail(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines[-n:])

    def console(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def qmp(self, command: str, **arguments: object) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.qmp_path))
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for cmd in ({"execute": "qmp_capabilities"},
                        {"execute": command, "arguments": arguments}):
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            if "error" in reply:
                raise VmError(f"qmp {command}: {reply['error']}")
            result: dict[str, object] = reply
            return result

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise VmError(f"qemu still running after {timeout:.0f}s; console tail:\n"
                          + self.tail()) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Vm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
