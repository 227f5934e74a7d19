"""Import pyroute2's DHCP client without pyroute2's package __init__ files and rtnl stack.

`import pyroute2` loads the old IPDB/NDB APIs, sqlite3, unittest.mock and more: measured at
677 ms of a 1.28 s import time under TCG. `pyroute2.netlink` and its rtnl package load the
whole rtnetlink marshalling (ssl, multiprocessing, unittest.mock, difflib): 4.5 MB and 150 ms
on the host. The DHCP client needs none of it, so the package __init__ files of `pyroute2` and
`pyroute2.netlink` are replaced by bare package modules that only carry __path__ (their
submodules then import as usual), `pyroute2.iproute` and `pyroute2.netlink.rtnl` by empty ones
(the frozen init carries none of their files), and `pyroute2.iproute.linux` by our own
AsyncIPRoute (pyroute2_iproute).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from init.net import rtnl

_LIGHT_PACKAGES = ("pyroute2", "pyroute2.netlink")
# Packages none of whose files are needed: the one name the DHCP client takes from each.
_BARE_PACKAGES: dict[str, dict[str, object]] = {
    "pyroute2.iproute": {}, "pyroute2.netlink.rtnl": {"RTMGRP_LINK": rtnl.RTMGRP_LINK}}
_OURS = {"pyroute2.iproute.linux": "init.net.pyroute2_iproute"}


def install() -> None:
    for name in _LIGHT_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"{name} is not an importable package")
        sys.modules[name] = importlib.util.module_from_spec(spec)  # not executed on purpose
    for name, attrs in _BARE_PACKAGES.items():
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []
            module.__dict__.update(attrs)
            sys.modules[name] = module
    for name, ours in _OURS.items():
        if name not in sys.modules:
            sys.modules[name] = importlib.import_module(ours)
