"""Our changes to the kernel source: kernel.patches/*.patch, applied in name order after unpacking.

Each patch starts with a paragraph saying why (`patch` skips text before the first hunk). The
patches are part of the unpacked tree's stamp and of the bzImage's cache key, so changing one
unpacks and builds again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from onebuild import paths, tools

PATCH_DIR = paths.ROOT / "kernel.patches"


def files() -> list[Path]:
    return sorted(PATCH_DIR.glob("*.patch"))


def identity() -> str:
    """One hash over the patches' names and contents ("" when there are none)."""
    found = files()
    if not found:
        return ""
    digest = hashlib.sha256()
    for path in found:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def apply(tree: Path) -> None:
    """Apply every patch to a freshly unpacked tree; one that does not apply cleanly fails."""
    for path in files():
        tools.run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                   "--reject-file=-", "-i", path], cwd=tree)
