"""The fixed timestamp every build output carries, so two builds give the same bytes."""

from __future__ import annotations

import os
import subprocess

from onebuild import paths


def epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the last commit's time, else 0 (outside a git checkout)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        return int(value)
    try:
        proc = subprocess.run(
            ["git", "log", "-1", "--format=%ct"],
            cwd=paths.ROOT, capture_output=True, text=True, check=True,
        )
        return int(proc.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0
