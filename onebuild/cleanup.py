"""`make clean` and `make distclean`: back to what a fresh clone has (plus the tool venv)."""

from __future__ import annotations

import shutil

from onebuild import paths


def clean() -> None:
    """Remove build outputs; the kernel source tree stays, so the next build needs no unpack."""
    shutil.rmtree(paths.TARGET, ignore_errors=True)
    shutil.rmtree(paths.ROOT / "oneproto", ignore_errors=True)
    for cache in paths.ROOT.rglob("__pycache__"):
        if paths.VENV not in cache.parents:
            shutil.rmtree(cache, ignore_errors=True)


def distclean() -> None:
    """clean, plus the unpacked kernel source and the tarballs downloaded into target/."""
    clean()
    shutil.rmtree(paths.KERNEL_TREE, ignore_errors=True)
