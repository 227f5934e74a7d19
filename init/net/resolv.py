"""resolv.conf from what the leases and RAs say (or what the command line imposes)."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from pathlib import Path

LOG = logging.getLogger("mvirt-one")


def render(nameservers: Iterable[str], search: Iterable[str]) -> str:
    """A resolv.conf; duplicates dropped, order kept (the first servers are the ones used:
    glibc and musl read at most three)."""
    servers = list(dict.fromkeys(nameservers))
    domains = list(dict.fromkeys(search))
    lines = ["# written by mvirt-one from DHCP/RA (kernel command line: one.dns, one.search)"]
    if domains:
        lines.append("search " + " ".join(domains))
    lines += [f"nameserver {s}" for s in servers]
    return "\n".join(lines) + "\n"


def scoped(server: str, ifname: str) -> str:
    """A link-local server is only reachable through its interface: say which (glibc reads it)."""
    try:
        if ipaddress.ip_address(server).is_link_local:
            return f"{server}%{ifname}"
    except ValueError:
        pass
    return server


def write(path: Path, text: str) -> bool:
    """Replace `path` atomically if its content differs; True when it was written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # readers never see half a file
    LOG.debug("wrote %s", path)
    return True
