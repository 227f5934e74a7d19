"""`make clean` and `make distclean`: back to what a fresh clone has (plus the tool venv)."""

from __future__ import annotations

import shutil
from pathlib import Path

from onebuild import paths
from onebuild.kernel import source

# Kernel tarballs the user or a download put into target/: a source, not a build output.
DOWNLOADS = ("linux-*.tar.*",)


def _is_download(name: str) -> bool:
    return any(paths.TARGET.joinpath(name).match(pattern) for pattern in DOWNLOADS)


def remove(targets: list[Path]) -> None:
    """Remove each of `targets`, file or directory tree; a missing one is fine."""
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def clean() -> None:
    """Remove build outputs; the kernel source tree and downloaded tarballs stay."""
    if paths.TARGET.exists():
        remove([entry for entry in paths.TARGET.iterdir() if not _is_download(entry.name)])
        if not any(paths.TARGET.iterdir()):
            paths.TARGET.rmdir()
    shutil.rmtree(paths.ROOT / "oneproto", ignore_errors=True)
    for cache in paths.ROOT.rglob("__pycache__"):
        if paths.VENV not in cache.parents:
            shutil.rmtree(cache, ignore_errors=True)


def distclean() -> None:
    """clean, plus the unpacked kernel source and the downloaded tarballs."""
    clean()
    source.remove_source()
    shutil.rmtree(paths.TARGET, ignore_errors=True)
