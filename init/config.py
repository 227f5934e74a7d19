"""The init's configuration: the kernel command line (keys `one.*`) in a VM, flags in local mode.

Every setting is declared once, in `SETTINGS`: its kernel key, its local-mode flag, its parser,
its defaults and its help. The command-line reader, the local-mode argument parser, the list of
known keys and the README's configuration table are all derived from it.

Secrets never come from here: /proc/cmdline is readable by every process, containers included.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from init.net import static as net_static

if TYPE_CHECKING:
    import argparse  # local mode only: PID 1 reads the kernel command line

LOG = logging.getLogger("mvirt-one")

Mode = Literal["pid1", "local"]

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting has a value the init cannot use; the message names the setting."""


# --- value parsers: (text, where it came from) → value; a bad text raises ConfigError ---------

Parser = Callable[[str, str], Any]


def _port(value: str, where: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{where}={value!r}: not a port number") from None
    if not 0 < port < 2**32:
        raise ConfigError(f"{where}={value!r}: out of range")
    return port


def _vsock_listen(value: str, where: str) -> str:
    return f"vsock:{_port(value, where)}"


def _local_listen(value: str, where: str) -> str:
    if not value.startswith(("unix:", "tcp:")):
        raise ConfigError(f"{where} {value!r}: use unix:PATH or tcp:HOST:PORT")
    return value


def _seconds(value: str, where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{where}={value!r}: not a number of seconds") from None
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"{where}={value!r}: must not be negative")
    return seconds


def _log_level(value: str, where: str) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(f"{where}={value!r}: use one of {', '.join(LOG_LEVELS)}")
    return value


def _path(value: str, where: str) -> Path | None:
    return Path(value) if value else None  # empty: the default


def _text(value: str, where: str) -> str | None:
    return value or None  # empty: the default


def _paths(value: str, where: str) -> tuple[Path, ...]:
    return tuple(Path(v) for v in filter(None, value.split(",")))


def _data_disk(value: str, where: str) -> str | None:
    if value and not (value.startswith("/dev/") or (value.startswith("LABEL=") and value[6:])):
        raise ConfigError(f"{where}={value!r}: use a device path (/dev/vda) or LABEL=name")
    return value or None


def _size(value: str, where: str) -> str | None:
    """A size as tmpfs takes it: bytes with an optional k/m/g suffix, or a percentage of RAM."""
    if value and not re.fullmatch(r"(?:[1-9][0-9]{0,15}[kKmMgG]?|(?:[1-9][0-9]?|100)%)", value):
        raise ConfigError(f"{where}={value!r}: use a size (512M, 2G) or a share of RAM (50%)")
    return value or None


def _bytes(value: str, where: str) -> int | None:
    """A size in bytes with an optional k/m/g suffix (powers of 1024)."""
    m = re.fullmatch(r"([0-9]{1,15})([kKmMgG]?)", value)
    if m is None:
        raise ConfigError(f"{where}={value!r}: use a size (32M, 1G)")
    return int(m[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[m[2].lower()]


def _count(value: str, where: str) -> int | None:
    if not value.isdigit() or len(value) > 9:
        raise ConfigError(f"{where}={value!r}: not a count")
    return int(value)


def _ip(value: str, where: str) -> tuple[net_static.IpParam, ...]:
    try:
        return (net_static.parse(value),)
    except net_static.IpParamError as e:
        raise ConfigError(f"{where}={value!r}: {e}") from None


def _addresses(value: str, where: str) -> tuple[str, ...]:
    out = []
    for item in filter(None, value.split(",")):
        try:
            out.append(str(ipaddress.ip_address(item.strip("[]"))))
        except ValueError:
            raise ConfigError(f"{where}={value!r}: {item!r} is not an IP address") from None
    return tuple(out)


def _domains(value: str, where: str) -> tuple[str, ...]:
    out = tuple(filter(None, value.split(",")))
    for domain in out:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,253}", domain):
            raise ConfigError(f"{where}={value!r}: {domain!r} is not a domain name")
    return out


def _registries(value: str, where: str) -> tuple[str, ...]:
    """host[:port] items (a name, an IPv4 address or a [bracketed] IPv6 one)."""
    out = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        if not re.fullmatch(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", item):
            raise ConfigError(f"{where} {item!r}: use HOST or HOST:PORT")
        out.append(item)
    return tuple(out)


# --- the table ---------------------------------------------------------------------------------

SAME = object()  # local_default: as in a VM
REQUIRED = object()  # local_default: the flag must be given


@dataclass(frozen=True)
class Setting:
    field: str  # the Config attribute it fills
    key: str | None  # one.KEY on the kernel command line; None: local mode only
    flag: str | None  # the local-mode flag; None: VM only
    parse: Parser  # None from it means "the default"
    default: Any  # in a VM
    help: str
    local_default: Any = SAME
    metavar: str = "VALUE"
    # Every value counts (the key or flag repeated): the parser returns tuples, concatenated.
    multi: bool = False
    aliases: tuple[str, ...] = ()  # bare kernel parameters read first as this setting (ip=)
    shown: str | None = None  # the default as the README shows it, when str(default) is not it


API_SOCKET = "api.sock"  # local mode's default API socket, in the data directory
API_HELP = "API address: a vsock port in a VM, unix:PATH or tcp:HOST:PORT in local mode"

SETTINGS: tuple[Setting, ...] = (
    Setting("listen", "port", None, _vsock_listen, "vsock:1024", API_HELP,
            metavar="N", shown="1024"),
    # The API has no authentication: by default a unix socket only its owner may open (0600),
    # never a TCP port every user and every container of the host can reach.
    Setting("listen", None, "--listen", _local_listen, None, API_HELP,
            local_default=None, metavar="ADDRESS", shown="unix:DATA_DIR/api.sock"),
    Setting("ready_port", "ready_port", None, _port, 1025, "host vsock port told `READY\\n`",
            metavar="N"),
    Setting("log_level", "log", "--log-level", _log_level, "info",
            "log level: " + ", ".join(LOG_LEVELS), metavar="LEVEL"),
    # The image ships the runtime it was built with (crun, or RUNTIME=...) behind this link.
    Setting("runtime", "runtime", "--runtime", _path, Path("/usr/bin/oci-runtime"),
            "OCI runtime binary (crun, runc or youki)", local_default=Path("/usr/bin/crun"),
            metavar="PATH", shown="/usr/bin/oci-runtime / /usr/bin/crun"),
    Setting("hostname", "hostname", None, _text, "mvirt-one", "the VM's hostname (a DHCP host "
            "name replaces it unless it is given)", metavar="NAME"),
    Setting("shutdown_grace", "grace", "--shutdown-grace", _seconds, 10.0,
            "seconds containers get between SIGTERM and SIGKILL (shutdown, StopPod without a "
            "timeout)", metavar="SECONDS", shown="10"),
    Setting("data_dir", "data_dir", "--data-dir", _path, Path("/var/lib/mvirt-one"),
            "images, bundles, pod overlays and logs", local_default=REQUIRED, metavar="DIR"),
    Setting("data_disk", "data_disk", None, _data_disk, "LABEL=mvirt-one-data",
            "the data directory's disk (formatted ext4 if blank); without one a tmpfs",
            metavar="DEVICE"),
    Setting("data_size", "data_size", None, _size, "50%",
            "size of the data tmpfs when there is no data disk (a share of MemAvailable at "
            "boot, or a size)", metavar="SIZE"),
    Setting("log_max_size", "log_max_size", "--log-max-size", _bytes, 10 << 20,
            "a container's log file is rotated at this size (as the kubelet's "
            "containerLogMaxSize)", metavar="SIZE", shown="10M"),
    Setting("log_max_files", "log_max_files", "--log-max-files", _count, 5,
            "log files kept per container output, the current one included "
            "(containerLogMaxFiles)", metavar="N"),
    Setting("max_pulls", "max_pulls", "--max-pulls", _count, 4,
            "pulls that run at once (each a thread of its own pool; more wait their turn)",
            metavar="N"),
    Setting("memory_reserve", "memory_reserve", None, _bytes, 32 << 20,
            "memory kept from the pods for the init and its helpers (pods/ memory.max is the "
            "total less this)", metavar="SIZE", shown="32M"),
    Setting("pids_reserve", "pids_reserve", None, _count, 128,
            "threads kept from the pods for the init and its helpers (pods/ pids.max is the "
            "kernel's threads-max less this)", metavar="N"),
    Setting("hooks_dir", None, "--hooks-dir", _path, Path("/etc/mvirt-one/boot.d"),
            "executables run once at start, in name order", local_default=None, metavar="DIR",
            shown="/etc/mvirt-one/boot.d / DATA_DIR/boot.d"),
    Setting("net_wait", "dhcp_timeout", None, _seconds, 5.0,
            "seconds boot waits for the NICs (DHCP goes on trying; see Network)",
            metavar="SECONDS", shown="5"),
    Setting("ip", "ip", None, _ip, (), "per-NIC method or static address (see Network)",
            multi=True, aliases=("ip",), shown="dhcp"),
    Setting("dns", "dns", None, _addresses, (), "name servers replacing DHCP's/RA's",
            metavar="ADDR[,ADDR]", shown="from DHCP/RA"),
    Setting("search", "search", None, _domains, (), "search domains replacing DHCP's/RA's",
            metavar="DOMAIN[,...]", shown="from DHCP/RA"),
    Setting("insecure_registries", "insecure_registries", "--insecure-registry", _registries,
            (), "registries that may fall back to plain HTTP if they do not speak TLS "
            "(loopback ones may too)",
            multi=True, metavar="HOST:PORT", shown="none"),
    Setting("registry_auth", "registry_auth", "--registry-auth", _path,
            Path("/etc/mvirt-one/registry-auth.json"),
            "registry credentials, Docker's `config.json` shape", local_default=None,
            metavar="PATH", shown="/etc/mvirt-one/registry-auth.json / none"),
    Setting("ca_files", "ca_file", "--ca-file", _paths, (),
            "PEM CA certificates trusted for registries besides the system bundle",
            multi=True, metavar="PATH", shown="none"),
)

KNOWN_KEYS = tuple(dict.fromkeys(s.key for s in SETTINGS if s.key))


@dataclass(frozen=True)
class Config:
    mode: Mode
    data_dir: Path
    listen: str  # "vsock:PORT" in a VM; "unix:PATH" or "tcp:HOST:PORT" in local mode
    ready_port: int
    log_level: str
    runtime: Path
    hostname: str
    shutdown_grace: float
    hooks_dir: Path
    net_wait: float
    ip: tuple[net_static.IpParam, ...]
    dns: tuple[str, ...]
    search: tuple[str, ...]
    insecure_registries: tuple[str, ...]
    registry_auth: Path | None
    ca_files: tuple[Path, ...]
    data_disk: str
    data_size: str
    memory_reserve: int
    max_pulls: int
    log_max_size: int
    log_max_files: int
    pids_reserve: int
    hostname_explicit: bool = False  # one.hostname given: a DHCP host name does not replace it
    unknown: tuple[str, ...] = ()  # one.* keys nobody knows, for the log


def _for_mode(mode: Mode) -> list[Setting]:
    return [s for s in SETTINGS if (s.key if mode == "pid1" else s.flag) is not None]


def default(field: str, mode: Mode = "pid1") -> Any:
    """A setting's default in `mode` (a VM-only setting keeps its VM default in local mode)."""
    candidates = [s for s in SETTINGS if s.field == field]
    s = next((c for c in candidates if c in _for_mode(mode)), candidates[0])
    return s.local_default if mode == "local" and s.local_default is not SAME else s.default


def defaults(mode: Mode, **values: Any) -> Config:
    """A Config of every default in `mode`, with `values` set (tests, embedders)."""
    fields = {s.field: default(s.field, mode) for s in SETTINGS}
    return Config(mode=mode, **{**fields, **values})


def _apply(setting: Setting, texts: list[tuple[str, str]]) -> Any:
    """The value of `setting` from its (text, where it came from) in order; the default if
    there are none."""
    if setting.multi:
        values: tuple[Any, ...] = ()
        for text, where in texts:
            values += setting.parse(text, where)
        return values if texts else setting.default
    parsed = setting.parse(*texts[-1]) if texts else None
    return setting.default if parsed is None else parsed


def parse_cmdline(text: str) -> dict[str, str]:
    """The `one.KEY=VALUE` parameters of a kernel command line (quotes as the kernel allows;
    a key given twice: the last wins)."""
    return {k[4:]: v[-1] for k, v in _kernel_params(text).items() if k.startswith("one.")}


def _kernel_params(text: str) -> dict[str, list[str]]:
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quote: the kernel itself would split on spaces
        words = text.split()
    params: dict[str, list[str]] = {}
    for word in words:
        key, _, value = word.partition("=")
        params.setdefault(key, []).append(value)
    return params


def from_cmdline(text: str) -> Config:
    """PID 1 configuration; a bad value is reported by ConfigError (the caller logs it)."""
    params = _kernel_params(text)
    values: dict[str, Any] = {}
    for s in _for_mode("pid1"):
        texts = [(t, alias) for alias in s.aliases for t in params.get(alias, ())]
        texts += [(t, f"one.{s.key}") for t in params.get(f"one.{s.key}", ())]
        values[s.field] = _apply(s, texts)
    given = parse_cmdline(text)
    return defaults("pid1", **values, hostname_explicit=bool(given.get("hostname")),
                    unknown=tuple(sorted(k for k in given if k not in KNOWN_KEYS)))


def local_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="mvirt-one-init",
        description=(
            "mvirt-one init. As PID 1 it brings a microVM up and reads its settings from the "
            "kernel command line (one.KEY=VALUE). Started as any other process it runs in local "
            "mode: the same services on a unix socket or TCP, as a child subreaper, with no "
            "mounts and no power-off."
        ),
    )
    for s in _for_mode("local"):
        assert s.flag is not None
        shown = default(s.field, "local")
        suffix = " (required)" if shown is REQUIRED else f" (default {shown})" \
            if shown not in (None, ()) else ""
        parser.add_argument(s.flag, dest=s.field, metavar=s.metavar, default=[],
                            action="append", help=s.help.replace("%", "%%") + suffix +
                            ("; repeatable" if s.multi else ""))
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def from_args(args: argparse.Namespace) -> Config:
    values: dict[str, Any] = {}
    for s in _for_mode("local"):
        texts: list[str] = getattr(args, s.field)
        if s.local_default is REQUIRED and not texts:
            raise ConfigError(f"{s.flag} is required in local mode")
        value = _apply(s, [(t, str(s.flag)) for t in texts])
        values[s.field] = value if texts or s.local_default is SAME else s.local_default
    data_dir: Path = values["data_dir"].resolve()
    return defaults("local", **{**values, "data_dir": data_dir,
                                "listen": values["listen"] or f"unix:{data_dir / API_SOCKET}",
                                "hooks_dir": values["hooks_dir"] or data_dir / "boot.d"})


def markdown_table(settings: Iterable[Setting] = SETTINGS) -> str:
    """The README's configuration table: one row per Config field."""
    rows: dict[str, list[Setting]] = {}
    for s in settings:
        rows.setdefault(s.field, []).append(s)
    lines = ["| kernel command line | local-mode flag | default | meaning |", "|---|---|---|---|"]
    for group in rows.values():
        keys = [s for s in group if s.key]
        flags = [s for s in group if s.flag]
        kernel = ", ".join(
            " / ".join([f"`{a}=...`" for a in s.aliases] + [f"`one.{s.key}={s.metavar}`"])
            for s in keys) or "—"
        local = ", ".join(f"`{s.flag} {s.metavar}`" + (" (repeatable)" if s.multi else "")
                          for s in flags) or "—"
        shown = " / ".join(dict.fromkeys(_shown(s) for s in group))
        lines.append(f"| {kernel} | {local} | {shown} | {group[0].help} |")
    return "\n".join(lines) + "\n"


def _shown(s: Setting) -> str:
    if s.shown is not None:
        return s.shown
    if s.key is None and s.local_default is not SAME:
        return "required" if s.local_default is REQUIRED else str(s.local_default)
    return str(s.default)


assert {f.name for f in dataclasses.fields(Config)} >= {s.field for s in SETTINGS}
