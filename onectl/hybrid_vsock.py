"""Hybrid vsock, the host side: reach a guest's vsock port through the hypervisor's unix socket.

cloud-hypervisor, firecracker and vhost-device-vsock expose a guest's vsock device as one unix
socket. A host client connects to it, writes `CONNECT <port>\\n` and gets `OK <host port>\\n`; from
then on the stream is the guest's. While nothing in the guest listens on the port (the VM is still
booting), the hypervisor answers a CONNECT by closing the stream (ECONNRESET/EPIPE/EOF), so those
are retried until a deadline; anything else is final.
"""

from __future__ import annotations

import errno
import itertools
import re
import socket
import time
from pathlib import Path

from onectl.errors import ConnectError

_OK = re.compile(rb"OK (\d+)\n")
_MAX_REPLY = 64  # "OK 4294967295\n" is 14 bytes; more is not the protocol
_RETRY_PAUSE = 0.05  # between attempts while the guest is not listening yet


class HandshakeError(ConnectError):
    """The hybrid-vsock socket answered, but not with the protocol (final, not retried)."""


class _NotListening(Exception):
    """The guest is not (yet) listening on the port: the hypervisor reset the stream."""


def _read_reply(sock: socket.socket) -> bytes:
    # Byte by byte: the guest may speak first right after OK (an HTTP/2 server sends its SETTINGS
    # at once), and those bytes belong to the caller, not to the handshake.
    reply = b""
    while not reply.endswith(b"\n"):
        if len(reply) >= _MAX_REPLY:
            break
        chunk = sock.recv(1)
        if not chunk:
            if reply:
                break  # a partial reply then EOF: garbled, not "not listening"
            raise _NotListening("closed by the hypervisor before OK")
        reply += chunk
    return reply


def _attempt(path: Path, port: int, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ConnectError(f"{path}: no such socket (is the VM running?)") from None
        except ConnectionRefusedError:
            raise ConnectError(f"{path}: connection refused (nothing serves the socket; "
                               "has the hypervisor exited?)") from None
        try:
            sock.sendall(b"CONNECT %d\n" % port)
            reply = _read_reply(sock)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise _NotListening(errno.errorcode.get(e.errno or 0, str(e))) from None
        except TimeoutError:
            raise ConnectError(f"{path}: no handshake reply within {timeout:.1f}s") from None
        if not _OK.fullmatch(reply):
            raise HandshakeError(f"{path}: unexpected hybrid-vsock handshake reply {reply!r} "
                                 f"to CONNECT {port} (expected 'OK <port>')")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def connect(path: Path, port: int, *, timeout: float) -> socket.socket:
    """A connected stream to the guest's vsock `port`, after a successful handshake.

    Retries while the guest is not listening yet, until `timeout` seconds have passed; raises
    ConnectError (exit code 3) with the reason otherwise.
    """
    deadline = time.monotonic() + timeout
    for attempt in itertools.count(1):
        try:
            return _attempt(path, port, max(deadline - time.monotonic(), 0.1))
        except _NotListening as e:
            if time.monotonic() + _RETRY_PAUSE >= deadline:
                raise ConnectError(
                    f"nothing listens on vsock port {port} behind {path} ({e}; "
                    f"{attempt} attempts in {timeout:.1f}s)") from None
        time.sleep(_RETRY_PAUSE)
    raise AssertionError("itertools.count() does not end")
