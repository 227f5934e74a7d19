"""Where things live: the repository, its build outputs and the cache outside the clone."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
KERNEL_TREE = ROOT / "kernel"  # unpacked kernel source (git-ignored), as the original has it
VENV = ROOT / ".venv"


def cache_dir() -> Path:
    """The cache that outlives a clone (built kernels, the static runtime), keyed by their inputs.

    CI starts from a fresh clone every time and a kernel takes ~6 minutes on 2 cores, so built
    artifacts are kept outside the clone under a key of all their inputs (version, config,
    toolchain): a hit is exactly what a rebuild would produce.
    """
    override = os.environ.get("MVIRT_ONE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "mvirt-one"
