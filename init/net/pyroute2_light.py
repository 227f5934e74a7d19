"""Import pyroute2's DHCP client without pyroute2's package __init__ files and rtnl stack.

`import pyroute2` loads the old IPDB/NDB APIs, sqlite3, unittest.mock and more: measured at
677 ms of a 1.28 s import time under TCG. `pyroute2.netlink` and its rtnl package load the
whole rtnetlink marshalling (ssl, multiprocessing, unittest.mock, difflib): 4.5 MB and 150 ms
on the host. The DHCP client needs none of it, so these package __init__ files are replaced by
bare package modules that only carry __path__ (their submodules then import as usual), and
`pyroute2.iproute.linux` by our own AsyncIPRoute (pyroute2_iproute).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_LIGHT_PACKAGES = ("pyroute2", "pyroute2.iproute", "pyroute2.netlink", "pyroute2.netlink.rtnl")
_OURS = {"pyroute2.iproute.linux": "init.net.pyroute2_iproute"}


def install() -> None:
    for name in _LIGHT_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"{name} is not an importable package")
        sys.modules[name] = importlib.util.module_from_spec(spec)  # not executed on purpose
        if name == "pyroute2.netlink.rtnl":
            from init.net import rtnl

            # The one name the DHCP client's raw socket imports from the package.
            sys.modules[name].RTMGRP_LINK = rtnl.RTMGRP_LINK  # type: ignore[attr-defined]
    for name, ours in _OURS.items():
        if name not in sys.modules:
            sys.modules[name] = importlib.import_module(ours)
