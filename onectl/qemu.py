"""A running qemu: its serial console and its QMP control socket (qemu_argv.py builds the
command line).

Used by `onectl run`, `doit run` and the VM tests. Under TCG (this project's CI has no usable KVM)
every wait is for a console line or a socket, with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from onectl import qemu_argv, tools
from onectl.errors import OnectlError
from onectl.process import wait_until
from onectl.qemu_argv import VmSpec
from onectl.tools import Host

__all__ = ["Vm", "VmError", "VmSpec"]

QMP_TIMEOUT = 10.0


class VmError(OnectlError):
    pass


class Vm:
    """qemu with its console lines (kept and logged to a file) and QMP commands. A context
    manager: started on entry, killed on exit."""

    def __init__(self, spec: VmSpec, workdir: Path, *, host: Host | None = None,
                 echo: bool = False) -> None:
        self.spec = spec
        self.host = host  # None: looked up at start
        self.workdir = workdir
        self.console_log = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.lines: list[tuple[float, str]] = []  # (seconds since qemu start, line)
        self._cond = threading.Condition()
        self._echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._console_closed = False  # qemu exited and every line it wrote is in self.lines

    def start(self) -> Vm:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        host = self.host or tools.probe_host(firmware=self.spec.boot == "uefi")
        esp = self._make_esp() if self.spec.boot == "uefi" else None
        argv = qemu_argv.argv(self.spec, host, qmp=self.qmp_path, esp=esp)
        (self.workdir / "qemu.cmdline").write_text(" ".join(argv) + "\n")
        self.started = time.monotonic()
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground process group,
        # and qemu would die at once on SIGINT instead of letting `onectl run` shut it down.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._read_console, args=(self.proc,), daemon=True).start()
        return self

    def _make_esp(self) -> Path:
        """The VM's ESP directory with a copy of the UKI (a copy: the drive is writable)."""
        esp = self.workdir / "esp"
        loader = esp / qemu_argv.ESP_LOADER
        loader.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self.spec.kernel, loader)
        except OSError as e:
            raise VmError(f"cannot put the UKI {self.spec.kernel} on the ESP: {e}") from e
        return esp

    def _process(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise VmError("qemu has not been started")
        return self.proc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """qemu's exit code; None while it runs or before it started."""
        return None if self.proc is None else self.proc.poll()

    def _read_console(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None  # stdout=PIPE
        with self.console_log.open("w", errors="replace") as log:
            for raw in proc.stdout:
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
            self._console_closed = True
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
                # Ends on the console's end, not on the exit code: the last lines qemu wrote
                # may still be on their way when it has exited.
                exited = self._console_closed
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

    def _qmp_alive(self) -> None:
        if not self.running:
            raise VmError(f"qemu exited with {self.returncode} before its QMP socket appeared")

    def qmp(self, command: str, **arguments: object) -> dict[str, object]:
        # qemu creates the socket while it starts: a command sent right after start waits for it.
        wait_until(self.qmp_path.exists, timeout=QMP_TIMEOUT, alive=self._qmp_alive,
                   expired=f"no QMP socket {self.qmp_path} within {QMP_TIMEOUT:g}s")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(QMP_TIMEOUT)
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

    def wait(self, timeout: float | None = None) -> int:
        """qemu's exit code (blocks; raises subprocess.TimeoutExpired after `timeout`)."""
        return self._process().wait(timeout)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.wait(timeout)
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
