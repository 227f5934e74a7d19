"""Where things live: the repository, its build outputs and the cache outside the clone."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
KERNEL_TREE = ROOT / "kernel"  # unpacked kernel source (git-ignored), as the original has it
VENV = ROOT / ".venv"
TOOLS = TARGET / "tools"  # host tools fetched as .deb and unpacked (vhost-device-vsock, ...)


def cache_dir() -> Path:
    """The cache that outlives a clone (built kernels, static runtime), keyed by their inputs.

    CI starts from a fresh clone every time; a kernel takes ~6 minutes to build on 2 cores, so a
    built kernel is kept outside the clone under a key of version + config + toolchain.
    """
    base = os.environ.get("MVIRT_ONE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "mvirt-one" if not os.environ.get("MVIRT_ONE_CACHE") else root
