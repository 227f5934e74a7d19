"""`make clean` and `make distclean`: back to what a fresh clone has (plus the tool venv)."""

from __future__ import annotations

import shutil

from onebuild import kernel, paths

# Kernel tarballs the user or a download put into target/: a source, not a build output.
DOWNLOADS = ("linux-*.tar.*",)


def _is_download(name: str) -> bool:
    return any(paths.TARGET.joinpath(name).match(pattern) for pattern in DOWNLOADS)


def clean() -> None:
    """Remove build outputs; the kernel source tree and downloaded tarballs stay."""
    if paths.TARGET.exists():
        for entry in paths.TARGET.iterdir():
            if _is_download(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if not any(paths.TARGET.iterdir()):
            paths.TARGET.rmdir()
    shutil.rmtree(paths.ROOT / "oneproto", ignore_errors=True)
    for cache in paths.ROOT.rglob("__pycache__"):
        if paths.VENV not in cache.parents:
            shutil.rmtree(cache, ignore_errors=True)


def distclean() -> None:
    """clean, plus the unpacked kernel source and the downloaded tarballs."""
    clean()
    kernel.remove_source()
    shutil.rmtree(paths.TARGET, ignore_errors=True)
