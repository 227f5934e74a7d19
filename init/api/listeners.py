"""The API's listening socket, bound before grpclib sees it.

grpclib (asyncio) can create TCP and unix servers itself, but not AF_VSOCK: asyncio's
create_server only resolves INET addresses. So every listener is bound here and handed to
`Server.start(sock=...)`, one code path for all three kinds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("mvirt-one")

BACKLOG = 128


class ListenError(OSError):
    """The API address cannot be used; the message says which address and why."""


@dataclass(frozen=True)
class Listener:
    sock: socket.socket
    address: str  # what was bound, e.g. "tcp:127.0.0.1:41235" when port 0 was asked for
    unix_path: Path | None = None  # removed again when the API stops

    def close(self) -> None:
        self.sock.close()
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_path.unlink()


def bind(listen: str) -> Listener:
    """Bind and listen on `listen` ("vsock:PORT", "unix:PATH" or "tcp:HOST:PORT")."""
    kind, _, rest = listen.partition(":")
    try:
        if kind == "vsock":
            return _bind_vsock(_port(rest, listen))
        if kind == "unix":
            if not rest:
                raise ListenError(f"{listen!r}: empty socket path")
            return _bind_unix(Path(rest))
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            return _bind_tcp(host.strip("[]"), _port(port, listen))
    except ListenError:
        raise
    except OSError as e:
        raise ListenError(f"cannot listen on {listen}: {e.strerror or e}") from e
    raise ListenError(f"{listen!r}: use vsock:PORT, unix:PATH or tcp:HOST:PORT")


def _port(text: str, listen: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ListenError(f"{listen!r}: {text!r} is not a port number") from None
    if not 0 <= port < 2**32:
        raise ListenError(f"{listen!r}: port out of range")
    return port


def _bind_vsock(port: int) -> Listener:
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        # Any CID: the guest's own CID is the hypervisor's choice and may change between boots.
        sock.bind((socket.VMADDR_CID_ANY, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Listener(sock, f"vsock:{port}")


def _bind_unix(path: Path) -> Listener:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The API has no authentication: only the owner may connect. The umask makes the socket
    # 0600 from its creation, so there is no window in which another user could connect.
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return Listener(sock, f"unix:{path}", unix_path=path)


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by an earlier run makes bind fail; anything else at the path stays."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket: not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a live server with a full backlog counts as live
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise ListenError(f"{path}: another process is serving on this socket")


def _bind_tcp(host: str, port: int) -> Listener:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ListenError(f"tcp:{host}:{port}: the host must be an IP address") from None
    if not ip.is_loopback:
        # Allowed for users who know their network, but the API has no authentication.
        LOG.warning("API on non-loopback address %s: anyone who can reach it controls the init",
                    ip)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted init must not wait for the old connections' TIME_WAIT to expire.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(ip), port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return Listener(sock, f"tcp:{shown}:{bound_port}")
