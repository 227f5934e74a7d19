"""The registry client's HTTP connections, one per (scheme, host), and their cancellation.

A pull spends most of its time blocked in a socket call (connect, TLS handshake, reading a body).
To stop pulls at once (the init shutting down), `Cancel.cancel` shuts down every socket in use:
the blocked call returns with an error and the client, seeing the cancellation, stops instead of
retrying. Each socket is reached through a duplicate of its descriptor taken before it connects:
the duplicate stays valid whatever the HTTP layer does with the original (wraps it in TLS, closes
it) and is closed when the connection is replaced or dropped. No socket of ours stands for a
name being resolved: getaddrinfo runs in a thread of its own that the pull stops waiting for.
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, TypeVar

from init.services.image.errors import PullCancelled

if TYPE_CHECKING:
    import ssl

Key = tuple[str, str]  # (scheme, host[:port])
T = TypeVar("T")


class Cancel:
    """Shared by every pull of an image service; once cancelled, for good."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._watched: set[socket.socket] = set()
        self._waits: set[threading.Event] = set()  # of `apart` calls, set by `cancel`

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            for guard in self._watched:
                with suppress(OSError):
                    guard.shutdown(socket.SHUT_RDWR)
            for wait in self._waits:
                wait.set()

    def apart(self, call: Callable[[], T]) -> T:
        """`call()` in a daemon thread of its own, waited for until the pulls are cancelled: for
        a blocking call no socket of ours interrupts, such as getaddrinfo (a DNS server that
        never answers holds it for resolv.conf's timeout times its attempts). Cancelled, the caller
        gets PullCancelled at once and the call ends alone; nothing waits for its thread."""
        done = threading.Event()
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(call())
            except BaseException as e:  # handed to the caller
                failure.append(e)
            finally:
                done.set()

        with self._lock:
            self._waits.add(done)
        try:
            self.check()
            threading.Thread(target=run, name="mvirt-one-apart", daemon=True).start()
            done.wait()
        finally:
            with self._lock:
                self._waits.discard(done)
        self.check()
        if failure:
            raise failure[0]
        return outcome[0]

    def check(self) -> None:
        if self._event.is_set():
            raise PullCancelled("pull cancelled: the init is shutting down")

    def sleep(self, seconds: float) -> None:
        """A back-off that ends early, with PullCancelled, when the pulls are cancelled."""
        self._event.wait(seconds)
        self.check()

    def watch(self, sock: socket.socket) -> socket.socket:
        """A duplicate of `sock` that `cancel` shuts down; give it back with `release`."""
        guard = sock.dup()
        with self._lock:
            self._watched.add(guard)
        if self._event.is_set():  # cancelled before it was in the set: cancel saw nothing
            self.release(guard)
            self.check()
        return guard

    def release(self, guard: socket.socket) -> None:
        with self._lock:
            self._watched.discard(guard)
        guard.close()


class Connections:
    """Kept-alive connections of one client (one thread)."""

    def __init__(self, cancel: Cancel, timeout: float,
                 tls_context: Callable[[], ssl.SSLContext]) -> None:
        self.cancel = cancel
        self._timeout = timeout
        self._tls_context = tls_context
        self._conns: dict[Key, http.client.HTTPConnection] = {}
        self._guards: dict[Key, socket.socket] = {}

    def get(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._conns.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self._timeout,
                                                   context=self._tls_context())
            elif scheme == "http":
                conn = http.client.HTTPConnection(netloc, timeout=self._timeout)
            else:
                raise ValueError(f"unsupported URL scheme {scheme!r}")
            # The one hook http.client offers into its connect: ours registers the socket.
            conn._create_connection = functools.partial(self._connect, key)  # type: ignore[attr-defined]
            self._conns[key] = conn
        return conn

    def _connect(self, key: Key, address: tuple[str, int], timeout: float,
                 source_address: object = None) -> socket.socket:
        self._unguard(key)  # http.client reconnects after a closed connection
        self.cancel.check()
        error: OSError | None = None
        found = self.cancel.apart(
            functools.partial(socket.getaddrinfo, *address, type=socket.SOCK_STREAM))
        for family, kind, proto, _, sockaddr in found:
            sock = socket.socket(family, kind, proto)
            try:
                self._guards[key] = self.cancel.watch(sock)
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except BaseException as e:
                self._unguard(key)
                sock.close()
                self.cancel.check()
                if not isinstance(e, OSError):
                    raise
                error = e
        raise error or OSError(f"{address[0]}: no address to connect to")

    def _unguard(self, key: Key) -> None:
        guard = self._guards.pop(key, None)
        if guard is not None:
            self.cancel.release(guard)

    def drop(self, scheme: str, netloc: str) -> None:
        conn = self._conns.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()
        self._unguard((scheme, netloc))

    def close(self) -> None:
        for scheme, netloc in list(self._conns):
            self.drop(scheme, netloc)
