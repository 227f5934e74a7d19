"""The network phase of PID 1: start the manager from the configuration, log what came of it."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from init.config import Config
from init.net.manager import NetSettings, NetworkManager, set_system_hostname

LOG = logging.getLogger("mvirt-one")


async def start(cfg: Config) -> NetworkManager:
    """Configure every interface, waiting at most cfg.net_wait; never raises (a VM without
    network still boots, and DHCP goes on trying in the background)."""
    manager = NetworkManager(NetSettings(
        wait=cfg.net_wait, ip=cfg.ip, dns=cfg.dns, search=cfg.search, hostname=cfg.hostname,
        set_hostname=None if cfg.hostname_explicit else set_system_hostname))
    try:
        await manager.start()
    except Exception as e:
        LOG.error("network: %s", e)
    return manager


def describe(state: Any) -> str:
    """One boot-log line for an interface, from what GetNetworkInfo reports."""
    parts = [state.name, state.mac_address]
    if state.ipv4_address:
        plen = ipaddress.IPv4Network(f"0.0.0.0/{state.ipv4_netmask or '32'}").prefixlen
        parts.append(f"ipv4 {state.ipv4_address}/{plen}")
        if state.ipv4_gateway:
            parts.append(f"via {state.ipv4_gateway}")
    else:
        parts.append("ipv4 none")
    if state.ipv4_dns:
        parts.append("dns " + ",".join(state.ipv4_dns))
    if state.ipv6_address:
        parts.append(f"ipv6 {state.ipv6_address}")
        if state.ipv6_gateway:
            parts.append(f"via {state.ipv6_gateway}")
    if state.ipv6_dns:
        parts.append("dns6 " + ",".join(state.ipv6_dns))
    if state.delegated_prefix:
        parts.append(f"delegated {state.delegated_prefix}")
    return " ".join(parts)


async def log_state(manager: NetworkManager) -> None:
    try:
        states = await manager.interfaces()
    except Exception as e:
        LOG.error("network: cannot read the interfaces: %s", e)
        return
    configured = set(manager.names)  # not lo, nor the kernel's sit0 and the like
    for state in states:
        if state.name in configured:
            LOG.info("network %s", describe(state))
