"""An in-process relay that lets grpcio reach a guest over hybrid vsock.

Why a relay rather than grpclib with a custom connection: grpcio cannot dial hybrid vsock (it needs
a CONNECT handshake on a unix socket before HTTP/2 starts), but it dials unix sockets. A relay keeps
one client library (grpcio, whose blocking API suits a CLI and whose streaming calls the exec and
logs commands use) for every transport, relies on no private grpclib internals, and the same
relay serves any other grpcio user - the wire-compatibility test's plain grpcio stub goes through it
too.

The relay listens on a unix socket in a private temporary directory (mode 0700, so only this user
can use it). For each connection grpcio opens it performs the handshake (retrying while the guest
is not listening yet) and then copies bytes both ways until either side closes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from onectl import hybrid_vsock
from onectl.errors import ConnectError

_CHUNK = 256 * 1024


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src → dst until EOF, then half-close dst so the far side sees the EOF too."""
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass  # a reset on either side ends this direction; the other one notices by itself
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class HybridVsockRelay:
    """`unix:<private socket>` that grpcio can dial, relayed to vsock `port` behind `uds_path`."""

    def __init__(self, uds_path: Path, port: int, *, connect_timeout: float) -> None:
        self.uds_path = uds_path
        self.port = port
        self.connect_timeout = connect_timeout
        self.last_error: ConnectError | None = None  # why the latest handshake failed
        self.handshakes = 0  # successful ones
        self._dir = Path(tempfile.mkdtemp(prefix="onectl-relay-"))  # mkdtemp makes it 0700
        self.socket_path = self._dir / "relay.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.socket_path))
        self._listener.listen(16)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="onectl-relay",
                                         daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        """The grpcio target to dial."""
        return f"unix:{self.socket_path}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # close() shut the listener down
            threading.Thread(target=self._serve, args=(client,), name="onectl-relay-conn",
                             daemon=True).start()

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                return False
            self._conns.update(socks)
            return True

    def _serve(self, client: socket.socket) -> None:
        guest: socket.socket | None = None
        try:
            if not self._track(client):
                return
            try:
                guest = hybrid_vsock.connect(self.uds_path, self.port,
                                             timeout=self.connect_timeout)
            except ConnectError as e:
                # grpcio only sees the stream close; the CLI reports this reason instead.
                self.last_error = e
                return
            self.handshakes += 1
            if not self._track(guest):
                return
            back = threading.Thread(target=_pump, args=(guest, client), daemon=True,
                                    name="onectl-relay-back")
            back.start()
            _pump(client, guest)
            back.join()
        finally:
            for sock in (client, guest):
                if sock is not None:
                    with self._lock:
                        self._conns.discard(sock)
                    sock.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            # shutdown() wakes a thread blocked in accept(); close() alone does not on Linux.
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> HybridVsockRelay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


