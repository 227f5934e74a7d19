"""`python -m init.net IFACE...`: the network configuration alone, for tests and debugging.

Configures the named interfaces (never any other: on a host that would be someone's network)
until SIGTERM/SIGINT, then releases the leases. resolv.conf goes where --resolv-conf says; the
hostname is never touched. --state writes the lease data as JSON after every change.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from init import config, log
from init.net import static
from init.net.manager import NetSettings, NetworkManager


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m init.net", description=__doc__)
    p.add_argument("interfaces", nargs="+", help="interfaces to configure")
    p.add_argument("--resolv-conf", type=Path, required=True, help="where to write resolv.conf")
    p.add_argument("--wait", type=float, default=config.default("net_wait"),
                   help="seconds to wait for configuration")
    p.add_argument("--ip", action="append", default=[], help="an ip= value (repeatable)")
    p.add_argument("--no-ipv6", action="store_true", help="no RA listening and no DHCPv6")
    p.add_argument("--state", type=Path, help="write lease data as JSON here on every change")
    p.add_argument("--log-level", default=config.default("log_level"), choices=config.LOG_LEVELS)
    return p


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def state_of(manager: NetworkManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in manager.names:
        iface = manager.interface(name)
        assert iface is not None
        out[name] = {
            "dhcp4": _jsonable(iface.dhcp4), "dhcp6": _jsonable(iface.dhcp6),
            "ra": _jsonable(iface.ra), "configured_after": iface.configured_after,
            "lease_data": _jsonable(manager.lease_data()[name]),
        }
    return out


async def _run(args: argparse.Namespace) -> int:
    try:
        params = tuple(static.parse(v) for v in args.ip)
    except static.IpParamError as e:
        print(f"--ip: {e}", file=sys.stderr)
        return 2
    settings = NetSettings(wait=args.wait, ip=params, resolv_conf=args.resolv_conf,
                           interfaces=tuple(args.interfaces), ipv6=not args.no_ipv6)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def dump() -> None:
        if args.state is not None:
            tmp = args.state.with_name(args.state.name + ".tmp")
            tmp.write_text(json.dumps(state_of(manager), indent=1))
            os.replace(tmp, args.state)

    manager = NetworkManager(settings, on_change=dump)
    ok = await manager.start()
    for line in manager.summary():
        print(f"network {line}", flush=True)
    print("configured" if ok else "not configured", flush=True)
    dump()
    await stop.wait()
    await manager.stop()
    dump()
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.setup(args.log_level)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
