"""cgroup2: hand every available controller down to child cgroups (the containers' parents)."""

from __future__ import annotations

import logging
from pathlib import Path

LOG = logging.getLogger("mvirt-one")


def enable_controllers(root: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """Write +ctrl for each controller into the root's subtree_control; returns those enabled."""
    try:
        available = (root / "cgroup.controllers").read_text().split()
    except OSError as e:
        LOG.warning("cgroup2 not available at %s: %s", root, e)
        return []
    enabled = []
    for controller in available:
        try:
            (root / "cgroup.subtree_control").write_text(f"+{controller}")
            enabled.append(controller)
        except OSError as e:
            LOG.warning("cannot enable cgroup controller %s: %s", controller, e)
    return enabled
