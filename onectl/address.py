"""Server addresses: which transport reaches the init.

- `vsock-uds:PATH[:PORT]`: hybrid vsock, the unix socket cloud-hypervisor and firecracker (and
  vhost-device-vsock) expose for a guest's vsock; PORT defaults to the API port 1024.
- `unix:PATH`: the init in local mode on a unix socket.
- `tcp:HOST:PORT`: the init in local mode on TCP (`[::1]:PORT` for IPv6).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from onectl.errors import UsageError

API_PORT = 1024  # the guest's vsock port for the API
READY_PORT = 1025  # the host port the guest writes READY\n to
# sun_path is 108 bytes including the terminating NUL.
MAX_UNIX_PATH = 107

Kind = Literal["vsock-uds", "unix", "tcp"]


@dataclass(frozen=True)
class Address:
    kind: Kind
    path: Path | None = None  # vsock-uds, unix
    port: int = 0  # vsock-uds (vsock port), tcp
    host: str = ""  # tcp

    def __str__(self) -> str:
        if self.kind == "vsock-uds":
            return f"vsock-uds:{self.path}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**32:
        raise UsageError(f"bad {what} {text!r} in address {spec!r}")
    return int(text)


def _unix_path(text: str, spec: str) -> Path:
    if not text:
        raise UsageError(f"address {spec!r} has no socket path")
    if len(text.encode()) > MAX_UNIX_PATH:
        raise UsageError(f"socket path in {spec!r} is longer than {MAX_UNIX_PATH} bytes, "
                         "the limit of a unix socket address")
    return Path(text)


def parse(spec: str) -> Address:
    """Parse an address; raises UsageError (exit code 2) with what is wrong."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise UsageError(f"address {spec!r} lacks a scheme: use vsock-uds:PATH[:PORT], "
                         "unix:PATH or tcp:HOST:PORT")
    if kind == "vsock-uds":
        # A trailing :DIGITS is the port; socket paths rarely end that way, and one that does can
        # be given with its port spelled out (PATH:1024).
        path, colon, port = rest.rpartition(":")
        if colon and port.isdigit():
            return Address("vsock-uds", path=_unix_path(path, spec),
                           port=_port(port, "vsock port", spec))
        return Address("vsock-uds", path=_unix_path(rest, spec), port=API_PORT)
    if kind == "unix":
        return Address("unix", path=_unix_path(rest, spec))
    if kind == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host:
            raise UsageError(f"address {spec!r} needs tcp:HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        number = _port(port, "TCP port", spec)
        if number > 65535:
            raise UsageError(f"bad TCP port {port!r} in address {spec!r}")
        return Address("tcp", host=host, port=number)
    raise UsageError(f"unknown transport {kind!r} in address {spec!r}: use vsock-uds:, unix: "
                     "or tcp:")
