"""vhost-device-vsock for one VM, as a context manager: started on entry, stopped on exit.

The daemon serves the guest's vsock device to qemu over a vhost-user socket and exposes it on the
host as a hybrid vsock unix socket (the same `CONNECT <port>` protocol cloud-hypervisor speaks).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from onectl.errors import OnectlError
from onectl.process import terminate, wait_until

START_TIMEOUT = 10.0


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class VsockDaemon:
    def __init__(self, binary: Path, *, cid: int, vhost_socket: Path, vsock_socket: Path,
                 log: Path) -> None:
        self.vhost_socket = vhost_socket
        self.log = log
        self.argv = [str(binary), "--vm",
                     f"guest-cid={cid},socket={vhost_socket},uds-path={vsock_socket}"]
        for stale in (vhost_socket, vsock_socket):
            stale.unlink(missing_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)

    def check(self, when: str = "") -> None:
        """Raise OnectlError with the end of its log if the daemon has exited."""
        if self.proc.poll() is not None:
            raise OnectlError(f"vhost-device-vsock exited with {self.proc.returncode}{when}: "
                              f"{_tail(self.log)}")

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        """The daemon creates its vhost-user socket once it is ready for qemu to connect."""
        wait_until(self.vhost_socket.exists, timeout=timeout, alive=self.check,
                   expired=f"vhost-device-vsock did not create {self.vhost_socket} within "
                   f"{timeout:g}s")

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> VsockDaemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
