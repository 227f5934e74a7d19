"""/init of the initramfs: a small static C program (preinit/preinit.c) that mounts the
compressed /usr images and execs the Python init, so the init stays PID 1.

Built with musl (a 30 KB static binary; glibc's static runtime alone is ~800 KB, and every byte
of /init stays in RAM). The paths it uses are compiled in from the initramfs layout, which
onebuild/initramfs.py declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onebuild import paths
from onebuild.tools import run

SOURCE = paths.ROOT / "preinit" / "preinit.c"
CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-std=gnu11")


def _c_string(value: str) -> str:
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"{value!r}: not a plain path")
    return f'"{value}"'


def _guest_path(name: str, value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{name}={value!r}: must be an absolute path in the guest")
    return _c_string(value)


def build(out: Path, *, images: Sequence[tuple[str, str]], init: str) -> None:
    """Compile the preinit to `out`: it mounts each (image, mount point) in order, then execs
    `init`; all are absolute paths in the guest."""
    if not images:
        raise ValueError("no image to mount")
    pairs = ",".join(f"{{{_guest_path('image', image)},{_guest_path('mount point', mount)}}}"
                     for image, mount in images)
    argv: list[str] = ["musl-gcc", *CFLAGS, f"-DIMAGES={pairs}",
                       f"-DINIT={_guest_path('INIT', init)}"]
    argv += ["-o", str(out), str(SOURCE)]
    run(argv, quiet=True)
    out.chmod(0o755)
