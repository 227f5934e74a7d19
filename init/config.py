"""The init's configuration: the kernel command line (keys `one.*`) in a VM, flags in local mode.

Secrets never come from here: /proc/cmdline is readable by every process, containers included.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from init.net import static as net_static

LOG = logging.getLogger("mvirt-one")

Mode = Literal["pid1", "local"]

DEFAULT_API_PORT = 1024
DEFAULT_READY_PORT = 1025
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_NET_WAIT = 5.0


class ConfigError(ValueError):
    """A setting has a value the init cannot use; the message names the setting."""


@dataclass(frozen=True)
class Config:
    mode: Mode
    data_dir: Path
    listen: str  # "vsock:PORT" in a VM; "unix:PATH" or "tcp:HOST:PORT" in local mode
    ready_port: int = DEFAULT_READY_PORT
    log_level: str = "info"
    runtime: Path = Path("/usr/bin/crun")
    hostname: str = "mvirt-one"
    shutdown_grace: float = 10.0
    hooks_dir: Path = Path("/etc/mvirt-one/boot.d")
    unknown: tuple[str, ...] = field(default=())
    # Network (PID 1): how long boot waits for the interfaces before going on (DHCP keeps
    # trying), ip= / one.ip= values, and resolver settings that replace what DHCP/RAs say.
    net_wait: float = DEFAULT_NET_WAIT
    ip: tuple[net_static.IpParam, ...] = ()
    dns: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    hostname_explicit: bool = False  # one.hostname given: a DHCP host name does not replace it
    # Images: registries reached over plain HTTP besides loopback ones (host or host:port), and
    # the registry credentials file (config.json shape; a path here, never a secret).
    insecure_registries: tuple[str, ...] = ()
    registry_auth: Path | None = Path("/etc/mvirt-one/registry-auth.json")


def parse_cmdline(text: str) -> dict[str, str]:
    """The `one.KEY=VALUE` parameters of a kernel command line (quotes as the kernel allows)."""
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quote: the kernel itself would split on spaces
        words = text.split()
    params: dict[str, str] = {}
    for word in words:
        if word.startswith("one."):
            key, _, value = word[4:].partition("=")
            params[key] = value
    return params


def _port(value: str, key: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"one.{key}={value!r}: not a port number") from None
    if not 0 < port < 2**32:
        raise ConfigError(f"one.{key}={value!r}: out of range")
    return port


def _grace(value: str, key: str) -> float:
    try:
        grace = float(value)
    except ValueError:
        raise ConfigError(f"one.{key}={value!r}: not a number of seconds") from None
    if grace < 0:
        raise ConfigError(f"one.{key}={value!r}: must not be negative")
    return grace


def _log_level(value: str, key: str) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(f"one.{key}={value!r}: use one of {', '.join(LOG_LEVELS)}")
    return value


def _ip_values(text: str) -> list[tuple[str, str]]:
    """Every `ip=` and `one.ip=` (key, value), plain ones first: for the same device the
    one.ip= given later wins."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    plain = [("ip", w[3:]) for w in words if w.startswith("ip=")]
    ours = [("one.ip", w[7:]) for w in words if w.startswith("one.ip=")]
    return plain + ours


def _ip_params(text: str) -> tuple[net_static.IpParam, ...]:
    params = []
    for key, value in _ip_values(text):
        try:
            params.append(net_static.parse(value))
        except net_static.IpParamError as e:
            raise ConfigError(f"{key}={value!r}: {e}") from None
    return tuple(params)


def _addresses(value: str, key: str) -> tuple[str, ...]:
    out = []
    for item in filter(None, value.split(",")):
        try:
            out.append(str(ipaddress.ip_address(item.strip("[]"))))
        except ValueError:
            raise ConfigError(f"one.{key}={value!r}: {item!r} is not an IP address") from None
    return tuple(out)


def _domains(value: str, key: str) -> tuple[str, ...]:
    out = tuple(filter(None, value.split(",")))
    for domain in out:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,253}", domain):
            raise ConfigError(f"one.{key}={value!r}: {domain!r} is not a domain name")
    return out


def _registries(values: list[str], what: str) -> tuple[str, ...]:
    """host[:port] items (a name, an IPv4 address or a [bracketed] IPv6 one)."""
    out = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if not re.fullmatch(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", item):
                raise ConfigError(f"{what} {item!r}: use HOST or HOST:PORT")
            out.append(item)
    return tuple(out)


KNOWN_KEYS = ("port", "ready_port", "log", "runtime", "hostname", "grace", "data_dir",
              "dhcp_timeout", "ip", "dns", "search", "insecure_registries", "registry_auth")


def from_cmdline(text: str) -> Config:
    """PID 1 configuration; a bad value is reported by ConfigError (the caller logs it)."""
    p = parse_cmdline(text)
    return Config(
        mode="pid1",
        data_dir=Path(p.get("data_dir", "/var/lib/mvirt-one")),
        listen=f"vsock:{_port(p.get('port', str(DEFAULT_API_PORT)), 'port')}",
        ready_port=_port(p.get("ready_port", str(DEFAULT_READY_PORT)), "ready_port"),
        log_level=_log_level(p.get("log", "info"), "log"),
        runtime=Path(p.get("runtime", "/usr/bin/crun")),
        hostname=p.get("hostname", "mvirt-one") or "mvirt-one",
        shutdown_grace=_grace(p.get("grace", "10"), "grace"),
        unknown=tuple(sorted(k for k in p if k not in KNOWN_KEYS)),
        net_wait=_grace(p.get("dhcp_timeout", str(DEFAULT_NET_WAIT)), "dhcp_timeout"),
        ip=_ip_params(text),
        dns=_addresses(p.get("dns", ""), "dns"),
        search=_domains(p.get("search", ""), "search"),
        hostname_explicit=bool(p.get("hostname")),
        insecure_registries=_registries([p.get("insecure_registries", "")],
                                        "one.insecure_registries"),
        registry_auth=Path(p.get("registry_auth") or "/etc/mvirt-one/registry-auth.json"),
    )


def local_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvirt-one-init",
        description=(
            "mvirt-one init. As PID 1 it brings a microVM up and reads its settings from the "
            "kernel command line (one.KEY=VALUE). Started as any other process it runs in local "
            "mode: the same services on a unix socket or TCP, as a child subreaper, with no "
            "mounts and no power-off."
        ),
    )
    parser.add_argument("--data-dir", type=Path,
                        help="directory for images, bundles and logs (required)")
    parser.add_argument("--listen", default="tcp:127.0.0.1:50051",
                        help="API address: unix:PATH or tcp:HOST:PORT (default %(default)s)")
    parser.add_argument("--runtime", type=Path, default=Path("/usr/bin/crun"),
                        help="OCI runtime binary (crun, runc or youki; default %(default)s)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--shutdown-grace", type=float, default=10.0,
                        help="seconds containers get between SIGTERM and SIGKILL at shutdown")
    parser.add_argument("--hooks-dir", type=Path, default=None,
                        help="run the executables in this directory once at start, in name order")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                        help="pull from this registry over plain HTTP (repeatable; loopback "
                        "registries always are)")
    parser.add_argument("--registry-auth", type=Path, default=None, metavar="FILE",
                        help="registry credentials, in Docker's config.json shape")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def from_args(args: argparse.Namespace) -> Config:
    if args.data_dir is None:
        raise ConfigError("--data-dir is required in local mode")
    listen: str = args.listen
    if not listen.startswith(("unix:", "tcp:")):
        raise ConfigError(f"--listen {listen!r}: use unix:PATH or tcp:HOST:PORT")
    return Config(
        mode="local",
        data_dir=args.data_dir.resolve(),
        listen=listen,
        log_level=args.log_level,
        runtime=args.runtime,
        shutdown_grace=args.shutdown_grace,
        hooks_dir=args.hooks_dir or args.data_dir / "boot.d",
        insecure_registries=_registries(args.insecure_registry, "--insecure-registry"),
        registry_auth=args.registry_auth,
    )
