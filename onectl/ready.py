"""The host end of the ready signal: the guest connects to vsock CID 2 port 1025 and writes
`READY\\n`. With hybrid vsock the hypervisor (vhost-device-vsock, cloud-hypervisor) turns that
into a connection to the unix socket `<vsock socket>_1025`, which we listen on."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from types import TracebackType


class ReadyListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.at: float | None = None  # time.monotonic() of the first READY
        self.lines: list[bytes] = []  # everything the guest sent, for diagnostics
        self._event = threading.Event()
        path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(4)
        self._thread = threading.Thread(target=self._accept_loop, name="onectl-ready",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(10)
                data = b""
                with contextlib.suppress(OSError):
                    while not data.endswith(b"\n") and len(data) < 256:
                        chunk = conn.recv(256)
                        if not chunk:
                            break
                        data += chunk
            now = time.monotonic()
            self.lines.append(data)
            if data.strip() == b"READY" and self.at is None:
                self.at = now
                self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._event.is_set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> ReadyListener:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
